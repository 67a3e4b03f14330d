"""What one counted forward pass can and cannot tell about a network, said in one line.

A prediction counts the operators of one forward pass. When the network's control flow depends on its input
(an early exit, a loop until convergence, a mixture of experts), another input runs other operators: the
prediction covers the branch taken, and ``branch_note`` says so from the operator sequences of two passes on
different random inputs. A network whose ``forward`` takes several tensors, or a dict, cannot run on the one
image or token tensor a command makes by default: ``forward_inputs`` names what it takes, and how to give it.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Mapping, Sequence

__all__ = ["branch_note", "forward_inputs", "SHAPE_SEPARATOR"]

# Separates the shapes of a forward's several inputs in --input-shape: "1,3,224,224;1,10".
SHAPE_SEPARATOR = ";"


def branch_note(first: Sequence[str], second: Sequence[str]) -> str | None:
    """None when two passes on different random inputs ran the same operators in the same order; else one line
    naming the first difference and saying that the prediction covers the branch the input took."""
    first, second = list(first), list(second)
    if first == second:
        return None
    index = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))
    one = first[index] if index < len(first) else "the end of the pass"
    other = second[index] if index < len(second) else "the end of the pass"
    return (f"the forward pass runs other operators on another random input ({len(first)} vs {len(second)} calls; "
            f"call {index + 1} is {one} in one and {other} in the other): its control flow depends on the data, "
            "so the prediction covers the branch this input took")


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, Mapping)


def forward_inputs(module: Any) -> str | None:
    """What ``module.forward`` takes, when that is not one tensor: ``"forward(x, mask) takes 2 inputs: ..."``
    with how to give them; None for a one-tensor forward (or one that cannot be inspected)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError, AttributeError):
        return None
    parameters = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    shown = f"forward({', '.join(p.name for p in signature.parameters.values())})"
    try:
        hints = typing.get_type_hints(module.forward)
    except Exception:  # noqa: BLE001 -- annotations of the user's code that do not resolve say nothing
        hints = {}
    if parameters and _is_mapping(hints.get(parameters[0].name, parameters[0].annotation)):
        return (f"{shown} takes a dict, which --input-shape cannot describe; wrap the network in a module whose "
                "forward takes tensors and builds the dict")
    if len(parameters) > 1:
        example = SHAPE_SEPARATOR.join(["1,3,224,224"] + ["1,16"] * (len(parameters) - 1))
        return (f"{shown} takes {len(parameters)} inputs: give one shape per input, separated by "
                f"'{SHAPE_SEPARATOR}', e.g. --input-shape '{example}'")
    return None
