from __future__ import annotations

import pytest
import torch

from rafss_core.segmentation.devices import (
    DeviceError,
    check_device,
    check_precision,
    compute_context,
    default_batch_size,
    resolve_device,
    resolve_precision,
)


def test_cpu_resolves_and_auto_precision_is_fp32_there():
    dev = resolve_device(" CPU ")
    assert dev == torch.device("cpu")
    check_device("cpu")
    assert resolve_precision("auto", dev) == "fp32"
    assert resolve_precision(" BF16", dev) == "bf16"
    assert default_batch_size(dev) == 8 and default_batch_size(torch.device("cuda", 0)) == 32


def test_compute_context_autocasts_only_for_bf16():
    x = torch.ones(2, 2)
    with compute_context(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with compute_context(torch.device("cpu"), "fp32"):
        assert (x @ x).dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", " CUDA:0"])
def test_cuda_without_a_gpu_names_the_fix(name):
    for check in (check_device, resolve_device):
        with pytest.raises(DeviceError, match="RAFSS_DEVICE=cpu"):
            check(name)


@pytest.mark.parametrize("name", ["tpu", "gpu0", "", "mps"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(DeviceError, match="cpu, cuda or cuda:N"):
        check_device(name)


def test_unknown_precision_is_refused():
    with pytest.raises(DeviceError, match="auto, fp32, bf16"):
        check_precision("fp16")
    with pytest.raises(DeviceError, match="auto, fp32, bf16"):
        resolve_precision("half", torch.device("cpu"))
