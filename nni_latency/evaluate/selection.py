"""Which whole networks to evaluate: zoo networks by name or kind, and seeded random samples of NNI's hub
spaces. Each is a small JSON-able ``NetworkSpec`` that builds a fresh, seeded network on demand, so a long
evaluation never holds many networks in memory and every round times the same weights.

Selections: ``all``, ``cnn``, ``transformer``, ``hybrid``, zoo names, ``hub:SPACE:N`` (N random
architectures of any space of ``spaces.hub``, at its native input size, sample ``i`` drawn with seed
``seed + i``), and ``hf:NAME`` or ``hf:GROUP``
(HF ``transformers`` implementations, ``hf_models``), comma-separated. The zoo and the HF models are test
sets: nothing here is ever sampled into the profiling suite.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, MutableMapping

import numpy as np
import torch
from torch import nn

from .. import zoo
from ..errors import InvalidInput, did_you_mean
from ..zoo import hf as hf_models

_logger = logging.getLogger(__name__)

__all__ = ["NetworkSpec", "select_networks", "hub_samples", "hub_spaces", "HUB_KIND", "NETWORK_KINDS"]

HUB_KIND = "hub"
NETWORK_KINDS = (*zoo.KINDS, HUB_KIND)
_DRAWS, _REDRAW_STRIDE = 100, 7919  # redraws of a sample that breaks a constraint, from seeds far from the others
_SEED = 0  # the weights of every network built here (latency does not depend on them; repeatability does)

SpaceCache = MutableMapping[str, nn.Module]


@dataclass(frozen=True)
class NetworkSpec:
    """One network to evaluate: a zoo entry (``space`` None) or a sample of a hub space."""

    name: str
    kind: str
    image_size: int
    space: str | None = None
    sample: Mapping[str, Any] | None = field(default=None, hash=False)

    def size(self, image_size: int | None = None) -> int:
        return int(image_size or self.image_size)

    def input_shape(self, batch: int = 1, image_size: int | None = None) -> tuple[int, int, int, int]:
        size = self.size(image_size)
        return (int(batch), 3, size, size)

    def key(self, batch: int = 1, image_size: int | None = None) -> str:
        """The row key of a measurement: network, batch and image size."""
        return f"{self.name}_b{int(batch)}_{self.size(image_size)}px"

    def build(self, image_size: int | None = None, spaces: SpaceCache | None = None) -> nn.Module:
        """A fresh network in eval mode, with weights drawn from a fixed seed; the caller's random state stays.

        ``spaces`` caches hub spaces between calls (building one takes about a second).
        """
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NNI warns about modules it does not trace; harmless here
            torch.manual_seed(_SEED)
            if hf_models.is_hf(self.name):
                return hf_models.get(self.name).build(image_size=self.size(image_size), seed=_SEED)
            if self.space is None:
                return zoo.get(self.name).build(image_size=self.size(image_size)).eval()
            return _hub_space(self.space, spaces).freeze(dict(self.sample or {})).eval()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "image_size": self.image_size, "space": self.space,
                "sample": dict(self.sample) if self.sample is not None else None}


def hub_spaces() -> list[str]:
    """Every space ``hub:SPACE:N`` can sample: those of ``spaces.hub`` (NNI's hub, its cell spaces included)."""
    from ..spaces.hub import space_names

    return space_names()


def _hub_space(name: str, spaces: SpaceCache | None = None) -> nn.Module:
    if spaces is not None and name in spaces:
        return spaces[name]
    from ..spaces.hub import build_space, space_entry

    entry = space_entry(name)  # an unknown name: one line listing the spaces
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(_SEED)
        space = build_space(name, entry.input_size)
    if spaces is not None:
        spaces[name] = space
    return space


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def hub_samples(space: str, count: int, seed: int = 0, spaces: SpaceCache | None = None) -> list[NetworkSpec]:
    """``count`` random architectures of hub space ``space``, at its native input size; sample ``i`` is drawn with
    seed ``seed + i`` (redrawn from the next seeds where a draw breaks one of the space's constraints, as
    NasBench101's can)."""
    if count < 1:
        raise InvalidInput(f"hub:{space}:{count} asks for no network; give a positive count, e.g. hub:{space}:5")
    from ..spaces.hub import space_entry

    mutables = _hub_space(space, spaces).simplify()
    size = space_entry(space).input_size
    samples = []
    for index in range(count):
        for attempt in range(_DRAWS):
            memo: dict[str, Any] = {}
            random_state = np.random.RandomState(seed + index + attempt * _REDRAW_STRIDE)
            try:
                for mutable in mutables.values():  # what ``space.random`` does, without building the network
                    mutable.random(memo, random_state)
            except ValueError:  # nni.mutable.ConstraintViolation: draw again
                continue
            break
        else:
            raise InvalidInput(f"no sample of hub space {space!r} met its constraints in {_DRAWS} draws")
        samples.append(NetworkSpec(f"{space}#{seed + index}", HUB_KIND, size, space,
                                   {label: _plain(value) for label, value in memo.items()}))
    return samples


def _parse_hub(term: str) -> tuple[str, int]:
    parts = term.split(":")
    if len(parts) != 3 or not parts[2].strip().isdigit():
        raise InvalidInput(f"network selection {term!r} must look like hub:SPACE:N, e.g. hub:proxylessnas:5 "
                           "(SPACE: a space of nni_latency.spaces.hub)")
    space, names = parts[1].strip(), hub_spaces()
    if space not in names:
        raise InvalidInput(f"unknown hub space {space!r} in {term!r}{did_you_mean(space, names)}; use one of "
                           f"{', '.join(names)}")
    return space, int(parts[2])


def select_networks(selection: str, seed: int = 0, spaces: SpaceCache | None = None) -> list[NetworkSpec]:
    """The networks a selection names, in order, each once (see the module docstring for the syntax).

    An unknown name is a one-line ``ValueError`` that lists the known names and guesses the one meant.
    """
    terms = [term.strip() for term in str(selection).split(",") if term.strip()]
    if not terms:
        raise InvalidInput("the network selection is empty: give all, cnn, transformer, hybrid, zoo names, "
                         "hub:SPACE:N or hf:NAME")
    chosen: dict[str, NetworkSpec] = {}
    for term in terms:
        if term.startswith("hub:"):
            space, count = _parse_hub(term)
            specs = hub_samples(space, count, seed, spaces)
        elif hf_models.is_hf(term):
            specs = [NetworkSpec(entry.target, entry.kind, entry.input_size) for entry in hf_models.select(term)]
        elif term == "all" or term in zoo.KINDS:
            specs = [_zoo_spec(name) for name in zoo.names(None if term == "all" else term)]
        elif term in zoo.names():
            specs = [_zoo_spec(term)]
        else:
            known = ["all", *zoo.KINDS, *zoo.names()]
            raise InvalidInput(f"unknown network {term!r}{did_you_mean(term, known)}; use all, {', '.join(zoo.KINDS)}, "
                             "hub:SPACE:N (SPACE: a space of nni_latency.spaces.hub), hf:NAME or hf:GROUP "
                             f"({', '.join(hf_models.HF_GROUPS)}) or zoo names: {', '.join(zoo.names())}")
        for spec in specs:
            chosen.setdefault(spec.name, spec)
    return list(chosen.values())


def _zoo_spec(name: str) -> NetworkSpec:
    entry = zoo.get(name)
    return NetworkSpec(entry.name, entry.kind, entry.input_size)
