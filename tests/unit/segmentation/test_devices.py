from __future__ import annotations

import pytest
import torch

from rafss_core.segmentation.devices import (
    DeviceError,
    default_batch_size,
    resolve_device,
    resolve_precision,
)


def test_cpu_resolves_and_auto_precision_is_fp32_there():
    dev = resolve_device(" CPU ")
    assert dev == torch.device("cpu")
    assert resolve_precision("auto", dev) == "fp32"
    assert resolve_precision("bf16", dev) == "bf16"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert default_batch_size(dev) == 8 and default_batch_size(torch.device("cuda", 0)) == 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(DeviceError, match="RAFSS_DEVICE=cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="RAFSS_DEVICE=cpu"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("name", ["tpu", "gpu0", ""])
def test_unknown_devices_are_refused(name):
    with pytest.raises(DeviceError, match="cpu, cuda or cuda:N"):
        resolve_device(name)


def test_unknown_precision_is_refused():
    with pytest.raises(DeviceError, match="auto, fp32, bf16"):
        resolve_precision("fp16", torch.device("cpu"))
