"""The measurement protocol: how every block of a device model was timed, as one frozen dataclass.

Its fields are written, the same way, into every JSONL row and into the ``device`` section of
``device_model.json``; ``protocol_of`` is the one reader of both (files written before the protocol had
its own type read the same way, with defaults for what they lack), and ``measure_latency`` takes it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidInput
from . import DEFAULT_RUNTIME, RUNTIMES

_logger = logging.getLogger(__name__)

__all__ = ["MeasurementProtocol", "Counting", "protocol_of", "records_protocol", "detect_vector_width",
           "detect_cache_kb", "PROTOCOLS",
           "ALLOCATORS", "DTYPES", "TORCH_DTYPES", "RESUME_FIELDS", "TIMING_FIELDS", "LEGACY_VECTOR_WIDTH"]

PROTOCOLS = ("rotate", "hot")
ALLOCATORS = ("steady", "default")
# The one dtype table: our short name -> torch's attribute name; both spellings are accepted everywhere.
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DTYPES = (*TORCH_DTYPES, *TORCH_DTYPES.values())
# Every model and row written before the vector width was recorded counted its features at 16 (AVX-512).
LEGACY_VECTOR_WIDTH = 16
# Rows and models written before cache sizes were recorded: the sizes of the host they came from (a Xeon).
LEGACY_L2_KB, LEGACY_LLC_KB = 1024, 32768
# The fields rows measured earlier must share with a run that resumes (or is compared with) them.
RESUME_FIELDS = ("runtime", "device", "threads", "dtype", "protocol", "allocator", "quantile")
# The timing budget: how long and how precisely each block is timed (the YAML ``timing`` section).
TIMING_FIELDS = ("working_set_mb", "min_run_time", "max_run_time", "max_spread")
# Fields whose presence says that a row or a model records how it was measured.
_RECORD_KEYS = ("runtime", "device", "threads", "dtype", "batch", "protocol", "allocator")
_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")
_TORCH_DTYPE_NAMES = {f"torch.{torch_name}": name for name, torch_name in TORCH_DTYPES.items()}


@dataclass(frozen=True)
class MeasurementProtocol:
    """How a block is timed: in which runtime, where, with how many threads, in which dtype, at which batch, how
    caches and the allocator are treated, with which timing budget, and the vector width its features are counted at.

    ``runtime``: what runs the module, ``torch`` (eager PyTorch) or ``onnxruntime`` (the module exported to ONNX and
    run in an ``InferenceSession`` with full graph optimization, ``threads`` intra-op threads, one inter-op thread).

    ``protocol``: ``rotate`` cycles copies of weights and inputs so every call starts with cold caches, as
    inside a network; ``hot`` times one copy. ``allocator``: ``steady`` keeps freed memory in the process
    (the command line turns it on; see ``timing.apply_allocator_policy``); ``default`` leaves it alone.
    ``rounds``: how many interleaved passes the measuring loop makes over its items; an item's latency is the
    ``quantile`` of its passes' pooled runs, so a burst of load on a shared host spoils one pass, not the estimate.
    ``quantile``: the statistic of the timed runs (each at least ~10 ms of calls) that is the latency: 0.5
    is the median (the profiling default: what a user's own timing loop reports); a lower quantile (0.25) is the
    speed of the device when other tenants leave it alone, which repeats better on a shared machine.
    ``vector_width``: channels are rounded up to it in the ``vflops_*`` features; None detects it for
    ``device`` (16 with AVX-512, 8 with AVX/AVX2 or on CUDA, 4 otherwise).
    ``l2_kb``, ``llc_kb``: the per-core L2 and the last-level cache (KiB); None reads them for ``device``.
    Operators cost more per byte once their data no longer fits there (``operators``).
    """

    device: str = "cpu"
    threads: int = 1
    dtype: str = "fp32"
    batch: int = 1
    protocol: str = "rotate"
    allocator: str = "steady"
    working_set_mb: float = 64.0
    min_run_time: float = 0.15
    max_run_time: float = 1.0
    max_spread: float = 0.10
    rounds: int = 1
    quantile: float = 0.5
    vector_width: int | None = None
    l2_kb: int | None = None
    llc_kb: int | None = None
    runtime: str = DEFAULT_RUNTIME

    def __post_init__(self):
        set_field = functools.partial(object.__setattr__, self)
        if not isinstance(self.device, str):
            set_field("device", str(self.device))  # a torch.device
        if not isinstance(self.dtype, str):
            set_field("dtype", _TORCH_DTYPE_NAMES.get(str(self.dtype), str(self.dtype)))  # a torch.dtype
        if not _DEVICE.fullmatch(self.device):
            raise InvalidInput(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")
        if self.runtime not in RUNTIMES:
            raise InvalidInput(f"unknown runtime {self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        for name in ("threads", "batch", "rounds"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
        if self.dtype not in DTYPES:
            raise InvalidInput(f"unknown dtype {self.dtype!r}: use one of fp32, fp16, bf16")
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"unknown protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if self.allocator not in ALLOCATORS:
            raise InvalidInput(f"unknown allocator policy {self.allocator!r}: use one of {', '.join(ALLOCATORS)}")
        for name in TIMING_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise InvalidInput(f"{name} must be a positive number, got {value!r}")
            set_field(name, float(value))
        if not isinstance(self.quantile, (int, float)) or isinstance(self.quantile, bool) or not 0 < self.quantile < 1:
            raise InvalidInput(f"quantile must be a number between 0 and 1 (0.5: the median), got {self.quantile!r}")
        set_field("quantile", float(self.quantile))
        if self.min_run_time > self.max_run_time:
            raise InvalidInput(f"min_run_time ({self.min_run_time}) must be at most max_run_time ({self.max_run_time})")
        if self.vector_width is None:
            set_field("vector_width", detect_vector_width(self.device))
        elif not _is_int(self.vector_width) or self.vector_width < 1:
            raise InvalidInput(f"vector_width must be a positive integer, got {self.vector_width!r}")
        for name, level in (("l2_kb", 2), ("llc_kb", 3)):
            value = getattr(self, name)
            if value is None:
                set_field(name, detect_cache_kb(self.device, level))
            elif not _is_int(value) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer (KiB), got {value!r}")

    @property
    def counting(self) -> Counting:
        """How features are counted for this protocol's device (what a model fitted on its rows predicts with)."""
        return Counting(self.vector_width, self.threads, self.l2_kb, self.llc_kb)

    @property
    def statistic(self) -> str:
        """The latency this protocol measures, in words: which statistic of the timed runs (pooled over its
        rounds) a latency is, and so what a model fitted on its rows predicts."""
        name = {0.5: "the median", 0.25: "the lower quartile", 0.75: "the upper quartile"}.get(
            self.quantile, f"quantile {self.quantile:g}")
        return f"{name} of the timed runs"

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``."""
        return self.device.split(":")[0]

    def to_dict(self) -> dict[str, Any]:
        """The fields, as written into every JSONL row and the device model."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> MeasurementProtocol:
        return dataclasses.replace(self, **changes)

    def with_timing(self, timing: Any) -> MeasurementProtocol:
        """This protocol with the timing budget of ``timing`` (a ``config.TimingConfig`` or a mapping)."""
        values = timing if isinstance(timing, Mapping) else dataclasses.asdict(timing)
        return self.replace(**{name: values[name] for name in (*TIMING_FIELDS, "rounds", "quantile") if values.get(name) is not None})

    def differences(self, other: MeasurementProtocol, fields: tuple[str, ...] = RESUME_FIELDS) -> list[str]:
        """The ``fields`` in which ``other`` differs from this protocol."""
        return [name for name in fields if getattr(self, name) != getattr(other, name)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasurementProtocol:
        """Read the protocol of a JSONL row or of a device model's ``device`` section.

        Older files lack fields: the device falls back to the ``type`` of the device, the batch to the
        row's block spec, the timing budget to the profiling config stored in the model, the vector width
        to 16 (what they were counted with), anything else to the defaults.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a measurement protocol must be a mapping of fields, got {type(data).__name__}")
        config = data.get("config")
        timing = config.get("timing") if isinstance(config, Mapping) else None
        timing = timing if isinstance(timing, Mapping) else {}
        spec = data.get("spec") if isinstance(data.get("spec"), Mapping) else {}
        fallbacks = {"device": data.get("type"), "batch": spec.get("batch"),
                     "vector_width": LEGACY_VECTOR_WIDTH, "l2_kb": LEGACY_L2_KB, "llc_kb": LEGACY_LLC_KB, **{name: timing.get(name) for name in TIMING_FIELDS}}
        values = {}
        for field in dataclasses.fields(cls):
            value = data.get(field.name)
            values[field.name] = value if value is not None else fallbacks.get(field.name)
        return cls(**{name: value for name, value in values.items() if value is not None})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def records_protocol(data: Mapping[str, Any]) -> bool:
    """Whether a row or a model's ``device`` section says anything about how it was measured."""
    return any(key in data for key in _RECORD_KEYS)


def protocol_of(source: Any) -> MeasurementProtocol:
    """The protocol of a ``LatencyModel``, a JSONL row, a device section, or a protocol (returned as is)."""
    if isinstance(source, MeasurementProtocol):
        return source
    device = getattr(source, "device", None)  # a LatencyModel
    if isinstance(device, Mapping) and not isinstance(source, Mapping):
        source = device
    return MeasurementProtocol.from_dict(source)


@dataclass(frozen=True)
class Counting:
    """What feature counting needs to know of the device: its vector width, the thread count (ATen picks
    convolution kernels by it), and its cache sizes (KiB). Built from a protocol (``protocol.counting``) or a
    model (``LatencyModel.counting``), so that profiling and prediction count alike."""

    vector_width: int = LEGACY_VECTOR_WIDTH
    threads: int = 1
    l2_kb: int = LEGACY_L2_KB
    llc_kb: int = LEGACY_LLC_KB

    @property
    def l2_elements(self) -> int:
        """fp32 elements that fit in the L2 caches of the threads in use."""
        return self.l2_kb * 256 * self.threads

    @property
    def llc_elements(self) -> int:
        """fp32 elements that fit in the last-level cache."""
        return self.llc_kb * 256


@functools.lru_cache(maxsize=None)
def detect_cache_kb(device: str = "cpu", level: int = 2) -> int:
    """The size (KiB) of cache ``level`` (2: one core's L2; 3: the last level) from ``/sys``; on CUDA the
    device's L2 for both; the legacy Xeon's sizes where nothing can be read."""
    if device.startswith("cuda"):
        try:
            import torch

            size = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)) // 1024
        except (ImportError, AttributeError, RuntimeError, AssertionError):
            size = 0
        return size or (LEGACY_L2_KB if level == 2 else LEGACY_LLC_KB)
    found: dict[int, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip().upper()
            lvl = int((index / "level").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        number = int(re.sub(r"[^0-9]", "", text) or 0)
        found[lvl] = number * (1024 if text.endswith("M") else 1)
    if level == 2:
        return found.get(2) or LEGACY_L2_KB
    return found.get(max(found)) if found and max(found) >= 3 else found.get(2) or LEGACY_LLC_KB


@functools.lru_cache(maxsize=None)
def detect_vector_width(device: str = "cpu") -> int:
    """fp32 lanes of the device's vector unit, which oneDNN blocks channels by: 16 with AVX-512, 8 with
    AVX/AVX2, 4 otherwise (e.g. ARM NEON); 8 on CUDA, where cuDNN's tensor layouts pad channels to 8."""
    if device.startswith("cuda"):
        return 8
    flags = _cpu_flags()
    if "avx512f" in flags:
        return 16
    if "avx2" in flags or "avx" in flags:
        return 8
    return 4


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    try:  # no /proc/cpuinfo (macOS, Windows): ask what ATen dispatches to
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        return set()
    return {"avx512f"} if capability.startswith("AVX512") else {"avx2"} if capability.startswith("AVX2") else set()
