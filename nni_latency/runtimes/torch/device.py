"""Where eager PyTorch runs: ``cpu``, ``cuda`` or ``cuda:N`` resolved (one line when absent), the dtype it computes
in, and the name of the machine that every row and model records."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from ...errors import InvalidInput
from ..protocol import DTYPES, TORCH_DTYPES

__all__ = ["resolve_device", "resolve_dtype", "device_description"]


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``cpu`` / ``cuda`` / ``cuda:N``; a one-line ``ValueError`` says what to do when it is absent."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidInput(f"unknown device {device!r}: use cpu, cuda or cuda:N") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {device!r} requested but no CUDA GPU is available to torch "
                             f"{torch.__version__}; use --device cpu or install a CUDA build of torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidInput(f"device {device!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} GPU(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif resolved.type != "cpu":
        raise InvalidInput(f"device type {resolved.type!r} is not supported: use cpu or cuda[:N]")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Map ``fp32``/``fp16``/``bf16`` to a torch dtype; fp16 is refused on CPU, where it is emulated."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype in DTYPES:
        resolved = getattr(torch, TORCH_DTYPES.get(dtype, dtype))
    else:
        raise InvalidInput(f"unknown dtype {dtype!r}: use one of fp32, fp16, bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise InvalidInput("dtype fp16 is not supported on cpu: use fp32 (or bf16), or profile a cuda device")
    return resolved


def device_description(device: str | torch.device) -> str:
    """The machine's name as rows and models record it: the GPU's, or the CPU's model name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
