"""hardware.py: which precision a GPU gets, decided from its compute capability, and the measured peak FLOP/s."""

import pytest
import torch

import hardware


@pytest.mark.parametrize("gpu, capability", [("V100", (7, 0)), ("T4", (7, 5)), ("RTX 2080", (7, 5))])
def test_gpus_that_only_emulate_bfloat16_get_float16(gpu, capability):
    assert not hardware.native_bf16(capability)


@pytest.mark.parametrize("gpu, capability", [("A100", (8, 0)), ("RTX 3090", (8, 6)), ("L4", (8, 9)),
                                             ("H100", (9, 0)), ("B200", (10, 0))])
def test_ampere_and_later_compute_bfloat16_natively(gpu, capability):
    assert hardware.native_bf16(capability)


def test_amd_gpus_under_rocm_have_bfloat16():
    assert hardware.native_bf16((9, 0), rocm=True)  # ROCm reports the gfx version, e.g. MI250X's gfx90a as 9.0
    assert hardware.native_bf16((7, 0), rocm=True)


def test_cpu_defaults_to_float32():
    assert hardware.default_dtype('cpu') == 'float32'


def test_peak_is_measured_once_per_process():
    hardware._measured_peak.clear()
    first = hardware.peak_flops('cpu', 'float32')
    assert hardware.peak_flops('cpu', 'bfloat16') == first  # CPU peaks are measured in float32 alone
    assert list(hardware._measured_peak) == [('cpu', 'float32')]


def test_measuring_the_peak_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    hardware.measure_matmul_flops('cpu', 'float32')
    assert torch.equal(torch.rand(3), want)
