"""Which device and precision the models run on: ``cpu`` or one GPU, fp32 or bf16.

``resolve_device("cuda")`` pins the process to one GPU (the current one, ``cuda:0`` unless
``CUDA_VISIBLE_DEVICES`` or ``torch.cuda.set_device`` says otherwise); ``cuda:N`` names it.
Run one worker per GPU, each with its own ``RAFSS_DEVICE=cuda:N``.

Precision ``auto`` is bf16 autocast on a GPU with native bf16 (what SAM 2's own examples run;
flash attention needs it) and fp32 on older GPUs and on the CPU, where the equivalence with
``SAM2VideoPredictor`` is exact. Reference memories are always built in fp32, so one memory
bank serves both precisions.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")


class DeviceError(ValueError):
    """The configured device cannot be used here; the message names the fix."""


def check_device(name: str) -> None:
    """Refuse a device that cannot be used here, without importing torch for ``cpu`` and
    without initialising CUDA (so a supervisor that only checks holds no GPU memory).

    Raises
    ------
    DeviceError
        The name is not a device, or no such GPU is visible to this process.
    """
    if name.strip().lower() != "cpu":
        _parse(name)


def _parse(name: str) -> torch.device:
    import torch

    try:
        device = torch.device(name.strip().lower())
    except (RuntimeError, AttributeError) as exc:
        raise DeviceError(f"device {name!r} is not a device: use cpu, cuda or cuda:N") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"device {name!r} is not supported: use cpu, cuda or cuda:N")
    count = torch.cuda.device_count()  # NVML where it can: no CUDA context is created
    if count == 0:
        raise DeviceError(f"device {name!r}: no CUDA GPU is visible to this process; set "
                          "RAFSS_DEVICE=cpu (or --device cpu), or check the NVIDIA driver and "
                          "CUDA_VISIBLE_DEVICES")
    if device.index is not None and device.index >= count:
        raise DeviceError(f"device {name!r}: only {count} GPU(s) are visible "
                          f"(cuda:0..cuda:{count - 1})")
    return device


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` -> a concrete ``torch.device`` (``cuda`` alone: the
    process's current GPU, which initialises CUDA).

    Raises
    ------
    DeviceError
        As :func:`check_device`.
    """
    import torch

    device = _parse(name)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def use_device(name: str) -> torch.device:
    """:func:`resolve_device`, then make that GPU the process's current one, so every
    allocation of this process (models, memories, SAM 2's own tensors) lands on it. Decoding
    also runs inside :func:`compute_context`, which pins the GPU for each calling thread (a
    threads-pool worker)."""
    device = resolve_device(name)
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    return device


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto`` -> bf16 on a GPU with native bf16 (compute capability 8.0+: A100, L4, H100…),
    fp32 on older GPUs and on the CPU; ``fp32`` and ``bf16`` as given."""
    name = check_precision(name)
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        import torch

        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    return name  # type: ignore[return-value]


def check_precision(name: str) -> str:
    """The precision's name, normalised; a :class:`DeviceError` for anything unknown."""
    name = name.strip().lower()
    if name not in PRECISIONS:
        raise DeviceError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def compute_context(device: torch.device, precision: Precision
                    ) -> AbstractContextManager[object]:
    """Where model code runs: the GPU made current for this thread, under bf16 autocast for
    ``precision == "bf16"``; nothing on the CPU in fp32."""
    stack = ExitStack()
    if device.type == "cuda":
        import torch

        stack.enter_context(torch.cuda.device(device))
    stack.enter_context(autocast(device, precision))
    return stack


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """bf16 autocast for ``precision == "bf16"``, else nothing."""
    if precision != "bf16":
        return nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def default_batch_size(device: torch.device) -> int:
    """Decode batch (target slice, label pairs) and encoder batch: a GPU amortises its kernel
    launches over larger batches; on the CPU larger batches measured no faster
    (``benchmarks/segment_speed.py``)."""
    return 32 if device.type == "cuda" else 8
