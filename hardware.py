"""Which device and precision the scripts run on, and how many FLOP/s the device can do at best."""

import time
from contextlib import nullcontext
from typing import Literal

import torch

from errors import UserError


def default_device():
    """The best device present: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return 'cuda'
    if torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def check_device(device):
    """Raises a UserError when the device named by the user is not on this machine."""
    try:
        device_type = torch.device(device).type
    except RuntimeError:
        raise UserError(f"device={device!r} is not a device; use cpu, cuda, cuda:N or mps")
    if device_type == 'cuda':
        if not torch.cuda.is_available():
            raise UserError(f"device={device} but CUDA is not available on this machine; use --device=cpu")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(f"device={device} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device_type == 'mps' and not torch.backends.mps.is_available():
        raise UserError(f"device={device} but MPS is not available on this machine; use --device=cpu")
    elif device_type not in ('cpu', 'cuda', 'mps'):
        raise UserError(f"device={device!r} is not supported; use cpu, cuda, cuda:N or mps")


def native_bf16(capability, rocm=False):
    """Whether a CUDA GPU of compute capability (major, minor) computes bfloat16 natively: Ampere (8.0) and later,
    and every AMD GPU under ROCm. V100 (7.0) and T4 (7.5) only emulate it, far slower than float16. This is what
    torch.cuda.is_bf16_supported(including_emulation=False) answers (torch >= 2.4), for any device, not just the
    current one; without the flag it also counts emulation."""
    return rocm or capability >= (8, 0)


def cuda_has_bf16(device):
    return native_bf16(torch.cuda.get_device_capability(device), rocm=torch.version.hip is not None)


def default_dtype(device):
    """bfloat16 on GPUs that have it, float16 on older CUDA GPUs, float32 on CPU: most CPUs run
    bfloat16 matmuls far slower than float32 (about 40x on an AVX2 machine without AVX-512 BF16)."""
    if device.startswith('cuda'):
        return 'bfloat16' if cuda_has_bf16(device) else 'float16'
    if device.startswith('mps'):
        return 'bfloat16' if torch.backends.mps.is_macos_or_newer(14, 0) else 'float16'
    return 'float32'


PTDTYPE = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
DTYPES = Literal['float32', 'bfloat16', 'float16', None]  # the dtype setting's values; None: default_dtype(device)


def check_dtype(device, dtype):
    if dtype == 'bfloat16' and device.startswith('cuda') and not cuda_has_bf16(device):
        raise UserError(f"{torch.cuda.get_device_name(device)} only emulates bfloat16, far slower than float16; "
                        f"use --dtype=float16")


def setup(device, dtype):
    """The prelude of every script that runs a model: checks device (and dtype; None picks the device's best),
    lets float32 matmuls use TF32 on CUDA (nanoGPT's choice), and returns the dtype and the context for forward
    passes in it (autocast; none for float32)."""
    check_device(device)
    dtype = dtype or default_dtype(device)
    check_dtype(device, dtype)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return dtype, autocast(device, dtype)


def autocast(device, dtype):
    """The mixed-precision context for forward passes: none for float32."""
    if dtype == 'float32':
        return nullcontext()
    return torch.amp.autocast(device_type=torch.device(device).type, dtype=PTDTYPE[dtype])


def grad_scaler(device, dtype):
    """The GradScaler that float16 training needs against gradients that underflow; a no-op for other dtypes.
    The same code on CUDA and CPU, so the CPU tests cover CUDA's. MPS has none that works in every torch version
    (it unscales through float64, which MPS lacks: pytorch#142397), so float16 runs unscaled there."""
    device_type = torch.device(device).type
    if dtype == 'float16' and device_type == 'mps':
        print("float16 on mps runs without a GradScaler: small gradients may underflow; bfloat16 has no such problem")
    return torch.amp.GradScaler(device_type if device_type != 'mps' else 'cpu',
                                enabled=dtype == 'float16' and device_type != 'mps')


# dense (no sparsity) bfloat16/float16 tensor-core peak FLOP/s, from the vendors' data sheets;
# the first name that appears in torch.cuda.get_device_name() wins
GPU_PEAK_FLOPS = [
    ('H100 PCIe', 756e12), ('H100 NVL', 835e12), ('H100', 989e12), ('H200', 989e12), ('GH200', 989e12),
    ('B200', 2250e12), ('A100', 312e12), ('A800', 312e12), ('L40S', 362e12), ('L40', 181e12), ('L4', 121e12),
    ('A10G', 70e12), ('A10', 125e12), ('A6000', 155e12), ('4090', 165e12), ('3090', 71e12), ('V100', 125e12),
    ('T4', 65e12),
]

_measured_peak = {}


def peak_flops(device, dtype):
    """The device's peak FLOP/s for dtype matmuls: the data-sheet figure for known GPUs, else measured as the
    best of a few large matmuls; on CPU and MPS in float32, their fastest (and the measure stays quick)."""
    if device.startswith('cuda') and dtype != 'float32':
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_FLOPS:
            if key in name:
                return flops
    if not device.startswith('cuda'):
        dtype = 'float32'
    if (device, dtype) not in _measured_peak:
        _measured_peak[(device, dtype)] = measure_matmul_flops(device, dtype)
    return _measured_peak[(device, dtype)]


def measure_matmul_flops(device, dtype, n=2048, repeats=2):
    # a generator of its own: measuring must not move the global RNG, or a training run's dropout would depend on it
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=PTDTYPE[dtype], generator=generator)
    b = torch.randn(n, n, device=device, dtype=PTDTYPE[dtype], generator=generator)
    best = float('inf')
    for _ in range(repeats + 1):  # the first is a warm-up
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def synchronize(device):
    """Waits for the device's queued work, so that a timing covers it."""
    if device.startswith('cuda'):
        torch.cuda.synchronize(device) # this device's, which need not be the current one
    elif device.startswith('mps'):
        torch.mps.synchronize()
