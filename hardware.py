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


def explain(config):
    """For --help: what the automatic values of a script's settings (device, dtype and compile) are on this machine."""
    device = config.get('device', default_device())
    text = {}
    if 'device' in config:
        text['device'] = f"(detected here: {default_device()}, the first present of cuda, mps, cpu)"
    if 'dtype' in config and config['dtype'] is None:
        text['dtype'] = f"(here, on {device}: {default_dtype(device)})"
    if 'compile' in config and config['compile'] is None:
        text['compile'] = f"(here, on {device}: {device.startswith('cuda')})"
    return text


def memory_bytes(device):
    """The memory of device: a GPU's whole memory, the machine's (Linux; not what is free at this instant, which other
    processes move up and down); None where it is not known."""
    if device.startswith('cuda'):
        return torch.cuda.mem_get_info(device)[1]
    try:
        with open('/proc/meminfo') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemTotal:'))
    except (OSError, StopIteration, ValueError):
        return None


def check_fits(config, device, batch_size, shards=1):
    """Raises a UserError when what a training run of a GPT of config must hold at least cannot fit in device's
    memory, before anything is built or written (allocating it would fail after minutes, or have the system kill the
    process): the weights, gradients and AdamW state (16 bytes a parameter, split over shards processes by FSDP), and
    a micro-batch's logits and their gradient (8 bytes a token and vocabulary entry). Activations come on top."""
    params = config.n_layer * 12 * config.n_embd ** 2 + (config.vocab_size + config.block_size) * config.n_embd
    logits = 8 * batch_size * config.block_size * config.vocab_size
    needed, memory = 16 * params / shards + logits, memory_bytes(device)
    if memory is not None and needed > memory:
        raise UserError(f"a model of n_layer={config.n_layer}, n_embd={config.n_embd}, block_size={config.block_size} "
                        f"and vocab_size={config.vocab_size} ({params:.3g} parameters) trained on micro-batches of "
                        f"{batch_size} needs at least {needed / 2**30:,.1f} GiB per process for its weights, "
                        f"gradients, AdamW state and logits, but {device} has {memory / 2**30:,.1f} GiB in all; "
                        f"make it smaller (or shard it with --fsdp=True under torchrun)")


def quick_command(dataset, device, vocab_size):
    """A training command for dataset that ends in minutes on device: the quick start's model on a CPU (fewer
    iterations for a large vocabulary), nanoGPT's baby GPT on a GPU."""
    # the configs' own dataset needs no flags: the run goes to their out_dir, which the README's commands name
    elsewhere = f" --dataset={dataset} --out_dir=out-{dataset}" if dataset != 'shakespeare_char' else ""
    if device.startswith('cuda'):
        return f"python train.py config/train_shakespeare_char.py{elsewhere}"
    fewer = " --max_iters=500 --lr_decay_iters=500" if vocab_size > 1024 else ""  # lm_head costs most then
    return f"python train.py config/train_shakespeare_char_cpu.py{elsewhere}{fewer}"


ASSUMED_MFU = 0.5  # of the peak, for an estimate before the first iteration (CPU runs reach 0.55-0.65)


def long_run_warning(model, rows, iterations, device, dtype, dataset):
    """Lines that say how long a run will take when an iteration of rows sequences (per process) will take more than
    10 s, and a command that ends in minutes; none otherwise. Never a refusal: the user may mean it."""
    flops = model.estimate_mfu(rows, 1.0, 1.0)  # the FLOPs of an iteration: its MFU were it to take 1 s at 1 FLOP/s
    peak = peak_flops(device, dtype)
    seconds = flops / (peak * ASSUMED_MFU)
    if seconds <= 10:
        return []
    return [f"note: an iteration of this run will take about {duration(seconds)} on {device} ({flops:.2g} FLOPs "
            f"at {ASSUMED_MFU:.0%} of its {peak / 1e12:.3g} TFLOP/s), so {iterations:,} iterations about "
            f"{duration(seconds * iterations)};",
            f"for a run of minutes here: {quick_command(dataset, device, model.config.vocab_size)}"]


def duration(seconds):
    """seconds as 42s, 3m05s, 5h02m, 12 days, 40 years."""
    for unit, size in (('years', 365 * 86400), ('days', 86400)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


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
