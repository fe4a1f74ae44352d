"""Device selection and the mixed-precision policy (``amp``), in one place.

``amp`` is ``auto`` (the default), ``bf16`` or ``off`` (``true`` / ``false`` are read as ``auto`` /
``off``). ``auto`` runs bf16 autocast + channels_last where it pays: on CUDA, and on CPUs with
bf16 matrix units (AMX or AVX512-BF16, e.g. recent Xeons); fp32 everywhere else. ``bf16`` forces
bf16 autocast (useful to measure it). Kernel solves and losses stay fp32 (:func:`full_precision`).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..errors import ConfigError, UserError

AMP_CHOICES = ("auto", "bf16", "off")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:1`` as given (under
    ``torchrun``, ``auto`` and ``cuda`` mean the GPU ``LOCAL_RANK``)."""
    if isinstance(spec, torch.device):
        return spec
    from .dist import device_for_rank
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return device_for_rank(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if spec == "cuda" and torch.cuda.is_available():
        return device_for_rank(torch.device("cuda"))     # under torchrun: this rank's GPU
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{spec}' was asked for but CUDA is not available on this machine",
                            fix="use --device cpu (or device=auto)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device '{spec}' does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("device 'mps' was asked for but is not available", fix="use --device cpu")
        return torch.device("mps")
    raise UserError(f"unknown device '{spec}'", fix="use one of auto, cpu, cuda, cuda:N")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16_units() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16)."""
    try:  # torch's own CPU feature probe (torch >= 2.1)
        cpu = torch._C._cpu
        if cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported():
            return True
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" amx_bf16", " avx512_bf16"))


def amp_mode(amp) -> str:
    """Normalise an ``amp`` setting (bool or string) to one of ``auto``, ``bf16``, ``off``."""
    if amp is True or amp is None:
        return "auto"
    if amp is False:
        return "off"
    s = str(amp).strip().lower()
    s = {"true": "auto", "on": "auto", "yes": "auto", "false": "off", "no": "off", "fp32": "off",
         "none": "off", "bfloat16": "bf16"}.get(s, s)
    if s not in AMP_CHOICES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_CHOICES)} (or true/false), got '{amp}'")
    return s


def amp_dtype(device: torch.device, amp="auto") -> torch.dtype | None:
    """The autocast dtype the policy picks for ``device`` (None: fp32)."""
    mode = amp_mode(amp)
    if mode == "off" or device.type not in ("cuda", "cpu"):
        return None
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16_units() else None


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture, thread count and whether it has bf16 units."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return (f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"bf16 units: {'yes' if cpu_has_bf16_units() else 'no'})")


def describe_precision(device: torch.device, amp="auto") -> str:
    """One phrase for run headers, e.g. ``bf16 autocast (CPU bf16 units)`` or ``fp32 (CPU without bf16 units)``."""
    dt = amp_dtype(device, amp)
    mode = amp_mode(amp)
    if dt is None:
        if mode == "off":
            return "fp32 (amp off)"
        return "fp32 (CPU without bf16 units)" if device.type == "cpu" else "fp32"
    why = "forced" if mode == "bf16" else ("CUDA" if device.type == "cuda" else "CPU bf16 units")
    return f"bf16 autocast + channels_last ({why})"


def autocast(device: torch.device, amp="auto"):
    """bf16 autocast where the policy says so (see the module docstring); a null context elsewhere."""
    dt = amp_dtype(device, amp)
    if dt is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dt)


def full_precision(device: torch.device):
    """A region inside an autocast block that runs in fp32 (kernel solves, losses)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def channels_last(module: torch.nn.Module, device: torch.device, amp="auto") -> torch.nn.Module:
    """Move ``module`` to ``device``; channels_last memory format where bf16 autocast runs."""
    module = module.to(device)
    if device.type == "cuda" or amp_dtype(device, amp) is not None:
        module = module.to(memory_format=torch.channels_last)
    return module


class Compiled:
    """``module`` through ``torch.compile`` (inductor), falling back to eager when compilation fails (no C++
    compiler, an unsupported op): the first failing call prints one note and every later call runs eager.

    ``enabled=False`` is plain eager. On a 2-core CPU the teacher's forward+backward ran 2.4x faster compiled
    (bf16) and 1.8x (fp32) after a one-off compile of about 40-80 s (scripts/bench_teacher.py)."""

    def __init__(self, module: torch.nn.Module, enabled: bool, what: str = "model"):
        self.module, self.what, self.eager = module, what, not enabled
        self.fn = torch.compile(module) if enabled else module

    def __call__(self, *args, **kw):
        if self.eager:
            return self.module(*args, **kw)
        try:
            return self.fn(*args, **kw)
        except Exception as e:  # noqa: BLE001  (any compiler failure: run eager instead)
            import sys
            self.eager = True
            print(f"note: torch.compile of the {self.what} failed ({type(e).__name__}: {str(e).splitlines()[0][:100]}); "
                  "running eager (set compile=false to skip the attempt)", file=sys.stderr, flush=True)
            return self.module(*args, **kw)
