"""The parts of a transformer a module belongs to (attention, MLP or other), and its encoder blocks: what
``analyze`` needs to split a transformer's predicted time into attention and MLP, block by block.

A module is classified by what it is, outermost first (a module inside a classified one is not looked at):

* **attention**: an ``nn.MultiheadAttention``, a module whose type name contains "Attention" or "Attn"
  (``Attention``, ``WindowAttention``, CoaT's ``FactorAttnConvRelPosEnc``, ...) or is EdgeNeXt's ``XCA`` or
  ends in "MLA" (EfficientViT's ``LiteMLA``), or one named ``attn``, ``attention`` or ``self_attn``.
  Its time is everything that runs inside it: q/k/v projections, the attention matmuls or fused
  ``scaled_dot_product_attention``, the softmax and the output projection.
* **mlp**: a module whose type name contains "Mlp", "MLP", "FFN" or "FeedForward", one named ``mlp``,
  ``ffn`` or ``feed_forward``, or, the fallback for unnamed ones, an ``nn.Sequential`` that is exactly
  linear -> activation -> linear (``nn.Linear``, a 1x1 convolution, or a module that starts with one, as
  LeViT's ``Linear_BN``; dropout and identity ignored).
* **other**: everything else (norms, patch embedding, residual adds, the head, and token mixers that are
  not attention, such as PoolFormer's pooling).

An encoder block is the largest module around one attention module that holds no other attention module
and at most one MLP (a ViT ``Block`` with its attention and MLP; a LeViT residual around one attention).
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

from torch import nn

__all__ = ["PARTS", "classify", "classified_modules", "encoder_blocks", "auto_blocks", "owner"]

PARTS = ("attention", "mlp", "other")

_ATTENTION_TYPE = re.compile(r"attention|attn|^xca$|mla$", re.IGNORECASE)
_MLP_TYPE = re.compile(r"mlp|ffn|feedforward", re.IGNORECASE)
_ATTENTION_NAMES = {"attn", "attention", "self_attn"}
_MLP_NAMES = {"mlp", "ffn", "feed_forward"}
_IGNORED = (nn.Dropout, nn.Identity)


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv2d):
        return module.kernel_size == (1, 1) and module.groups == 1
    first = next((m for m in module.modules() if any(True for _ in m.parameters(recurse=False))), None)
    return first is not None and first is not module and _is_linear(first)


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == nn.modules.activation.__name__ and not isinstance(module, nn.MultiheadAttention)


def _looks_like_mlp(module: nn.Module) -> bool:
    if not isinstance(module, nn.Sequential):
        return False
    layers = [m for m in module.children() if not isinstance(m, _IGNORED)]
    return len(layers) == 3 and _is_linear(layers[0]) and _is_activation(layers[1]) and _is_linear(layers[2])


def classify(name: str, module: nn.Module) -> str | None:
    """``attention``, ``mlp``, or None (other) for ``module``, known as ``name`` in its network."""
    last = name.rsplit(".", 1)[-1]
    type_name = type(module).__name__
    if isinstance(module, nn.MultiheadAttention) or _ATTENTION_TYPE.search(type_name) or last in _ATTENTION_NAMES:
        return "attention"
    if _MLP_TYPE.search(type_name) or last in _MLP_NAMES or _looks_like_mlp(module):
        return "mlp"
    return None


def classified_modules(network: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The outermost attention and MLP modules of ``network``: (qualified name, module, part)."""
    found: list[tuple[str, nn.Module, str]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            part = classify(name, child)
            if part is not None:
                found.append((name, child, part))
            else:
                walk(name, child)

    walk("", network)
    return found


def owner(name: str, blocks: Sequence[str]) -> str | None:
    """The block among ``blocks`` that contains the module called ``name`` (itself included), if any."""
    return next((block for block in blocks if name == block or name.startswith(block + ".")), None)


def encoder_blocks(network: nn.Module) -> list[str]:
    """The encoder blocks of ``network`` (see the module docstring), in the network's order."""
    classified = classified_modules(network)
    attention = [name for name, _, part in classified if part == "attention"]
    mlps = [name for name, _, part in classified if part == "mlp"]
    blocks = []
    for name in attention:
        parts = name.split(".")
        chosen = name
        for cut in range(len(parts) - 1, 0, -1):  # widen while the ancestor holds only this attention module
            ancestor = ".".join(parts[:cut])
            inside = [other for other in attention if owner(other, [ancestor])]
            if len(inside) > 1 or sum(1 for mlp in mlps if owner(mlp, [ancestor])) > 1:
                break
            chosen = ancestor
        if chosen not in blocks:
            blocks.append(chosen)
    return blocks


def auto_blocks(network: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """The rows a transformer is reported in: every encoder block, and around them the largest modules that
    hold none (patch embedding, a downsampling layer, the norm and head). Returns (blocks, encoder block
    names); a network without attention gives ([], []), for the caller to cut by depth instead."""
    encoders = encoder_blocks(network)
    if not encoders:
        return [], []

    def rows(prefix: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            inside = [e for e in encoders if owner(e, [name])]
            if name in encoders or not inside:
                yield name, child
            else:
                yield from rows(name, child)

    return list(rows("", network)), encoders
