"""What determines the operators a module runs, as a hashable key: its submodules' types, scalar attributes and
parameter shapes (never their values). Counting and exporting are cached by it: identical blocks of a space, or
the same block measured in several rounds, are counted or exported once."""

from __future__ import annotations

import itertools

from torch import nn

__all__ = ["module_signature"]


def module_signature(module: nn.Module) -> tuple:
    """What determines the ops a module runs: types, scalar attributes and parameter shapes, per submodule."""
    parts = []
    for name, sub in module.named_modules():
        attrs = []
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, (bool, int, float, str, type(None))) or (
                    isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float, str)) for v in value)):
                attrs.append((key, tuple(value) if isinstance(value, list) else value))
            elif callable(value) and not isinstance(value, nn.Module):
                attrs.append((key, getattr(value, "__qualname__", type(value).__qualname__)))
        tensors = tuple((n, tuple(t.shape), str(t.dtype))
                        for n, t in itertools.chain(sub.named_parameters(recurse=False),
                                                    sub.named_buffers(recurse=False)) if t is not None)
        parts.append((name, type(sub).__module__, type(sub).__qualname__, tuple(attrs), tensors))
    return tuple(parts)
