"""Cutting a whole network into blocks and recording how each block is called: the blocks ``depth`` levels
down or named ones, the input shapes of every call (from one forward pass of the network), and each block's
features on those shapes, alone or inside the network, as the model's runtime counts them. ``analysis`` builds its
report on this.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from torch import nn

from ..count.features import BlockFeatures
from ..count.inputs import InputSpec, make_inputs, module_device_dtype
from ..errors import InvalidInput, ShapeError, did_you_mean
from ..runtimes import get_runtime

_logger = logging.getLogger(__name__)

__all__ = ["Shapes", "select_blocks", "record_calls", "block_features", "sum_features", "runnable_blocks",
           "attribute_features"]

Shapes = tuple[tuple[int, ...], ...]  # one shape per positional tensor argument of one call
Count = Callable[..., BlockFeatures]  # (module, input shape) -> its features, as ``LatencyModel.count``


def _valid_names_hint(names: Sequence[str], limit: int = 16) -> str:
    # Shallow names first: those are what a user most likely meant.
    ordered = sorted(names, key=lambda n: n.count("."))
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(ordered) - limit} more)" if len(ordered) > limit else "")


def select_blocks(network: nn.Module, depth: int = 1,
                  names: Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The blocks to report: the children ``depth`` levels down (a leaf above that stays), or ``names``."""
    if names:
        available = {name: module for name, module in network.named_modules() if name}
        chosen = []
        for name in names:
            if name not in available:
                guess = did_you_mean(name, available)
                raise InvalidInput(f"no block named {name!r} in {type(network).__name__}{guess}; "
                                 f"valid names: {_valid_names_hint(list(available)) or 'none'}")
            if name in (n for n, _ in chosen):
                raise InvalidInput(f"block {name!r} is named twice in --blocks; name each block once")
            chosen.append((name, available[name]))
        _check_disjoint(chosen)
        return chosen
    if not isinstance(depth, int) or depth < 1:
        raise InvalidInput(f"depth must be a positive integer, got {depth!r}")
    level: list[tuple[str, nn.Module]] = [("", network)]
    for _ in range(depth):
        expanded: list[tuple[str, nn.Module]] = []
        for prefix, module in level:
            children = [(f"{prefix}.{n}" if prefix else n, m) for n, m in module.named_children()]
            expanded.extend(children or [(prefix, module)])
        level = expanded
    return level


def _check_disjoint(blocks: Sequence[tuple[str, nn.Module]]) -> None:
    # A block inside another would be counted twice and the (rest) row would go negative.
    owner: dict[int, str] = {}
    for name, module in blocks:
        for sub in module.modules():
            if id(sub) in owner:
                raise InvalidInput(f"blocks {owner[id(sub)]!r} and {name!r} overlap (one contains the other); "
                                 "name blocks that do not contain each other")
            owner[id(sub)] = name


def _bounded(spec: InputSpec, tensor) -> InputSpec:
    """``spec`` of a block's integer input, its ids drawn below the largest id the block was given (read after the
    counted pass: an operator run inside it would be counted)."""
    if tensor.dtype == torch.bool or not tensor.numel():
        return spec.with_high(1)
    return spec.with_high(max(int(tensor.max()) + 1, 1))


def _forward(network: nn.Module, input_shape) -> None:
    """One forward pass in eval mode with no grad (the network's training flag restored), for its hooks."""
    device, dtype = module_device_dtype(network)
    inputs = make_inputs(input_shape, device=device, dtype=dtype)
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(*inputs)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        shape_text = " and ".join(",".join(map(str, t.shape)) for t in inputs)
        raise ShapeError(f"input shape {shape_text} does not fit {type(network).__name__} ({error})") from error
    finally:
        network.train(was_training)


def record_calls(network: nn.Module, blocks: Sequence[tuple[str, nn.Module]], input_shape: Sequence[int],
                 count: Count, strict: bool = True) -> tuple[BlockFeatures, dict[str, list[Shapes] | None]]:
    """The whole network's features (``count``: ``LatencyModel.count``), and the input shapes of every block call,
    recorded in one forward pass.

    A block called with keyword or non-tensor arguments cannot be predicted alone: an error, or with
    ``strict=False`` its calls are None (``runnable_blocks`` then reports its enclosing module instead)."""
    calls: dict[str, list[Shapes]] = {name: [] for name, _ in blocks}
    untraceable: dict[str, str] = {}
    integers: list[tuple[str, int, int, object]] = []  # (block, call, argument, tensor) of integer inputs

    def recorder(name: str):
        def hook(_module, args, kwargs):
            tensors = [a for a in args if hasattr(a, "shape") and hasattr(a, "dtype")]
            if kwargs or len(tensors) != len(args) or not args:
                untraceable.setdefault(name, "keyword or non-tensor arguments" if args or kwargs else "no arguments")
                return
            shapes = []
            for index, tensor in enumerate(args):  # token ids (and masks) keep their dtype: counted alone as such
                shape = tuple(int(d) for d in tensor.shape)
                if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
                    shapes.append(shape)
                else:
                    integers.append((name, len(calls[name]), index, tensor))
                    shapes.append(InputSpec(shape, tensor.dtype))
            calls[name].append(tuple(shapes))
        return hook

    handles = [module.register_forward_pre_hook(recorder(name), with_kwargs=True) for name, module in blocks]
    try:
        _forward(network, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    for name, call, index, tensor in integers:
        shapes = list(calls[name][call])
        shapes[index] = _bounded(shapes[index], tensor)
        calls[name][call] = tuple(shapes)
    if untraceable and not strict:
        return count(network, input_shape), {name: None if name in untraceable else shapes
                                             for name, shapes in calls.items()}
    if untraceable:
        name, why = next(iter(untraceable.items()))
        raise InvalidInput(f"block {name!r} is called with {why}, so it cannot be predicted alone; "
                           "choose other blocks with --depth or --blocks")
    return count(network, input_shape), calls


def block_features(name: str, module: nn.Module, calls: Sequence[Shapes],
                   cache: dict[tuple[int, Shapes], BlockFeatures], count: Count) -> list[BlockFeatures]:
    """The block's features alone (``count``: ``LatencyModel.count``), once per recorded call (``cache`` shares
    them between identical calls)."""
    features = []
    for shapes in calls:
        key = (id(module), shapes)
        if key not in cache:
            try:
                cache[key] = count(module, shapes[0] if len(shapes) == 1 else list(shapes))
            except ShapeError as error:
                raise InvalidInput(f"block {name!r} cannot be run alone on its recorded input ({error})") from None
        features.append(cache[key])
    return features


def sum_features(rows: Sequence[BlockFeatures], names: Sequence[str]) -> dict[str, float]:
    """The features ``names`` summed over ``rows``."""
    total = dict.fromkeys(names, 0.0)
    for row in rows:
        for name, value in row.as_dict().items():
            total[name] = total.get(name, 0.0) + value
    return total


def runnable_blocks(network: nn.Module, blocks: Sequence[tuple[str, nn.Module]],
                    calls: dict[str, list[Shapes] | None]) -> list[tuple[str, nn.Module]]:
    """``blocks`` with each one that cannot run alone (``calls`` None, see ``record_calls(strict=False)``)
    replaced by its nearest enclosing module that can and is called (a transformer block called with its
    token grid's H, W is reported as its stage); the blocks that enclosing module holds are merged into it."""
    modules = dict(network.named_modules())
    chosen: list[str] = []
    for block, _ in blocks:
        name = block
        if calls.get(name) is None:  # climb to an enclosing module that is called, with tensors only
            name = name.rpartition(".")[0]
            while name and not calls.get(name):
                name = name.rpartition(".")[0]
        if not name:
            raise InvalidInput(f"block {block!r} is called with keyword or non-tensor arguments and no module around "
                             "it can be predicted alone; choose blocks with --depth or --blocks")
        chosen.append(name)
    kept = [name for name in dict.fromkeys(chosen)
            if not any(other != name and name.startswith(other + ".") for other in chosen)]
    return [(name, modules[name]) for name in kept]


def attribute_features(network: nn.Module, input_shape: Sequence[int], modules: Sequence[tuple[str, nn.Module]],
                       model) -> dict[str, BlockFeatures]:
    """The features each of ``modules`` (disjoint) adds inside one run of ``network`` as ``model``'s runtime runs
    it (``Runtime.count_within``), whatever its arguments."""
    device, dtype = module_device_dtype(network)
    inputs = make_inputs(input_shape, device=device, dtype=dtype)
    return get_runtime(model.runtime).count_within(network, inputs, modules, model.counting)[1]
