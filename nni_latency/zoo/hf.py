"""Real implementations as a second whole-network test set: vision models of HF ``transformers``, by name.

The zoo's networks are written from their papers; these are the code people deploy, with its own layout
choices (channels-last token maps, explicit attention, weight-standardised convs, in-place ops). Each entry
builds a representative variant from its config class alone (random weights, seeded, eval mode): nothing is
downloaded, and ``transformers`` is an optional extra (``pip install -e .[hf]``), imported only when an
``hf:`` name is built. Like the zoo, these are a test set: nothing here is ever sampled into the suite.

Names: ``hf:ConvNext``, ``hf:PvtV2``, ...; groups ``hf:all``, ``hf:cnn``, ``hf:transformer``, ``hf:hybrid``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import did_you_mean
from . import KINDS

_logger = logging.getLogger(__name__)

__all__ = ["HF_PREFIX", "HF_GROUPS", "INSTALL_HINT", "HFEntry", "HFVision", "names", "get", "select", "build",
           "is_hf"]

HF_PREFIX = "hf:"
HF_GROUPS = ("all", *KINDS)
INSTALL_HINT = "install transformers (pip install transformers, or pip install -e .[hf])"
_SEED = 0


def _frozen(**values: Any) -> Mapping[str, Any]:
    return MappingProxyType(values)


@dataclass(frozen=True)
class HFEntry:
    """One ``transformers`` vision model: its config and model classes (by name, so nothing is imported until
    it is built), the config values of the variant it stands for, and its kind (as the zoo's)."""

    name: str
    kind: str
    variant: str
    config: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=_frozen, hash=False)
    input_size: int = 224

    @property
    def target(self) -> str:
        return f"{HF_PREFIX}{self.name}"

    def input_shape(self, batch: int = 1, image_size: int | None = None) -> tuple[int, int, int, int]:
        size = int(image_size or self.input_size)
        return (int(batch), 3, size, size)

    def build(self, image_size: int | None = None, seed: int = _SEED, **overrides: Any) -> nn.Module:
        """A fresh ``HFVision`` in eval mode, weights drawn from ``seed``, the caller's random state kept.

        ``overrides`` replace config values (tests build tiny variants: two layers, a small width).
        """
        transformers = _transformers()
        config_class, model_class = getattr(transformers, self.config), getattr(transformers, self.model)
        values = {"num_labels": 1000, **self.overrides, **overrides}
        size = int(image_size or self.input_size)
        default = getattr(config_class(), "image_size", None)
        if default is not None:  # position tables and window grids follow the input the model is built for
            values.setdefault("image_size", [size, size] if isinstance(default, (list, tuple)) else size)
        try:
            config = config_class(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.target}: config {self.config} rejects {sorted(values)} ({error})") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return HFVision(model_class(config)).eval()


class HFVision(nn.Module):
    """A ``transformers`` model as a plain ``forward(pixels) -> tensor``, so counting and timing see what they
    see in any other network: the logits of a classifier, else the last hidden state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels, return_dict=True)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out.last_hidden_state


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return transformers


def _cls(name: str) -> tuple[str, str]:
    return f"{name}Config", f"{name}ForImageClassification"


_SMALL_VIT = _frozen(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)

# name -> the variant it stands for. Defaults of the config classes are kept where they are the small/base
# variant already; the rest are set to the published small one, so a forward takes well under 2 s on one core.
_ENTRIES: tuple[HFEntry, ...] = (
    HFEntry("ViT", "transformer", "ViT-S/16", *_cls("ViT"), _SMALL_VIT),
    HFEntry("DeiT", "transformer", "DeiT-S/16", *_cls("DeiT"), _SMALL_VIT),
    HFEntry("BEiT", "transformer", "BEiT-S/16 (relative position bias)", *_cls("Beit"),
            _frozen(**_SMALL_VIT, use_relative_position_bias=True)),
    HFEntry("Data2VecVision", "transformer", "data2vec-S/16", *_cls("Data2VecVision"), _SMALL_VIT),
    HFEntry("DINOv2", "transformer", "DINOv2-S/14", *_cls("Dinov2"), _SMALL_VIT),
    HFEntry("DINOv2Reg", "transformer", "DINOv2-S/14 with 4 registers", *_cls("Dinov2WithRegisters"), _SMALL_VIT),
    HFEntry("Swin", "transformer", "Swin-T", *_cls("Swin")),
    HFEntry("Swinv2", "transformer", "SwinV2-T (window 7)", *_cls("Swinv2")),
    HFEntry("PvtV2", "transformer", "PVTv2-b1", *_cls("PvtV2"), _frozen(hidden_sizes=[64, 128, 320, 512])),
    HFEntry("Pvt", "transformer", "PVT-Tiny", *_cls("Pvt")),
    HFEntry("Segformer", "transformer", "MiT-b0", *_cls("Segformer")),
    HFEntry("Hiera", "transformer", "Hiera-T", *_cls("Hiera"), _frozen(depths=[1, 2, 7, 2])),
    HFEntry("PoolFormer", "transformer", "PoolFormer-S12", *_cls("PoolFormer")),
    HFEntry("ConvNext", "cnn", "ConvNeXt-T", *_cls("ConvNext")),
    HFEntry("ConvNextV2", "cnn", "ConvNeXt V2-T", *_cls("ConvNextV2")),
    HFEntry("ResNet", "cnn", "ResNet-50", *_cls("ResNet")),
    HFEntry("RegNet", "cnn", "RegNetY-4GF-like (config default)", *_cls("RegNet")),
    HFEntry("EfficientNet", "cnn", "EfficientNet-B0", *_cls("EfficientNet"),
            _frozen(width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280, dropout_rate=0.2)),
    HFEntry("MobileNetV1", "cnn", "MobileNetV1 1.0", *_cls("MobileNetV1")),
    HFEntry("MobileNetV2", "cnn", "MobileNetV2 1.0", *_cls("MobileNetV2")),
    HFEntry("BiT", "cnn", "BiT-R50x1 (weight-standardised convs)", *_cls("Bit")),
    HFEntry("TextNet", "cnn", "TextNet-T", *_cls("TextNet")),
    HFEntry("HGNetV2", "cnn", "HGNetV2-B4-like (config default)", *_cls("HGNetV2")),
    HFEntry("MobileViT", "hybrid", "MobileViT-S", *_cls("MobileViT"), input_size=256),
    HFEntry("MobileViTV2", "hybrid", "MobileViTV2-1.0", *_cls("MobileViTV2"), input_size=256),
    HFEntry("LeViT", "hybrid", "LeViT-128S", "LevitConfig", "LevitForImageClassification"),
    HFEntry("FocalNet", "hybrid", "FocalNet-T (SRF)", *_cls("FocalNet")),
    HFEntry("CvT", "hybrid", "CvT-13", *_cls("Cvt")),
    HFEntry("SwiftFormer", "hybrid", "SwiftFormer-XS", *_cls("SwiftFormer")),
)
_BY_NAME = {entry.name: entry for entry in _ENTRIES}


def is_hf(term: str) -> bool:
    """Whether a network name or target is an ``hf:`` one."""
    return str(term).strip().startswith(HF_PREFIX)


def names(kind: str | None = None) -> list[str]:
    """Registered model names (of one ``kind`` if given), in the registry's order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    return [entry.name for entry in _ENTRIES if kind is None or entry.kind == kind]


def get(name: str) -> HFEntry:
    """The entry of ``name`` (with or without ``hf:``); a one-line ``ValueError`` lists the names if unknown."""
    bare = str(name).strip()
    bare = bare[len(HF_PREFIX):] if bare.startswith(HF_PREFIX) else bare
    if bare not in _BY_NAME:
        raise ValueError(f"unknown HF network {bare!r}{did_you_mean(bare, _BY_NAME)}; use hf:GROUP "
                         f"({', '.join(HF_GROUPS)}) or hf:NAME, NAME one of {', '.join(_BY_NAME)}")
    return _BY_NAME[bare]


def select(term: str) -> list[HFEntry]:
    """The entries ``hf:NAME`` or ``hf:GROUP`` names; checks that ``transformers`` is installed first."""
    _transformers()
    rest = str(term).strip()[len(HF_PREFIX):]
    if rest in HF_GROUPS:
        return [_BY_NAME[name] for name in names(None if rest == "all" else rest)]
    return [get(rest)]


def build(name: str, image_size: int | None = None, **overrides: Any) -> nn.Module:
    """A fresh, seeded ``HFVision`` of ``name`` in eval mode (see ``HFEntry.build``)."""
    return get(name).build(image_size, **overrides)
