"""
Peak memory of each training process under torchrun: DDP against FSDP, with train.py's own parallel.py.
$ python bench/memory_fsdp.py                              # ~200M parameters, 2 processes, on CPU
$ python bench/memory_fsdp.py --nproc=8 --device=cuda --n_layer=48 --n_head=25 --n_embd=1600   # gpt2-xl's shape
Each mode is a torchrun of this script (--mode=ddp or fsdp) that builds the model as train.py does (FSDP: on the
meta device, then each process initialises its shards), takes a few training iterations of random tokens (one
micro step per process, gradient clipping, AdamW) and reports each process's peak: its resident high-water mark
on CPU (bench/memory.py), max_memory_allocated on CUDA. 'built' is the peak once the model is on its device
(DDP: the whole model; FSDP: the shards, and one whole weight at a time while they are initialised); 'above
start' leaves out what the process held before the model was made (the torch libraries, about 0.3 GB of RSS).
The gather of a whole checkpoint to rank 0 comes after and is reported on its own: it is CPU memory, and a GPU
run never holds it. The processes run with glibc's default malloc settings, as a user's would;
docs/distributed.md says what the figures are made of.
"""

import json
import os
import subprocess
import sys
from typing import Literal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) # the repository's modules

import torch
import torch.distributed as dist

import parallel
from configurator import at_least, configure
from memory import peak_rss
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
mode: Literal['both', 'ddp', 'fsdp'] = 'both' # 'both' runs the two below, one torchrun each, and prints the table; 'ddp' or 'fsdp': one process's part
nproc: at_least(1) = 2
device: str = 'cpu'
dtype: str = 'float32'
n_layer: at_least(1) = 12 # 12 layers of 1024: 151M weights in the Blocks, 203M in all with the vocabulary below
n_head: at_least(1) = 16
n_embd: at_least(1) = 1024
vocab_size: at_least(1) = 50304
block_size: at_least(1) = 64
batch_size: at_least(1) = 1 # the activations are small next to weights, gradients and AdamW state: those are measured here
iters: at_least(1) = 2
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------
GiB = 2 ** 30


def peak():
    return torch.cuda.max_memory_allocated(device) if device.startswith('cuda') else peak_rss()


def measure():
    """One process of a torchrun: prints a JSON line of every process's figures on rank 0."""
    global device
    if device.startswith('cuda'):
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    parallel.init_process_group('nccl' if device.startswith('cuda') else 'gloo', device, 600, '.')
    start = peak()
    torch.manual_seed(1337)
    with parallel.building(mode == 'fsdp'):
        model = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                              vocab_size=vocab_size, bias=False, dropout=0.0))
    if mode == 'fsdp':
        parallel.shard(model, device, dtype, 1337)
    else:
        model.to(device)
    built_peak = peak()
    optimizer = model.configure_optimizers(0.1, 1e-4, (0.9, 0.95), torch.device(device).type)
    trained = parallel.wrap(model, device)
    for _ in range(iters):
        x, y = torch.randint(vocab_size, (2, batch_size, block_size), device=device)
        with torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype), enabled=dtype != 'float32' and mode == 'ddp'):
            _, loss = trained(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    training_peak = peak()
    parallel.full_state(model, [optimizer])
    figures = dict(built_peak=built_peak, peak=training_peak, above_start=training_peak - start, gather_peak=peak())
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, figures)
    if dist.get_rank() == 0:
        print('memory: ' + json.dumps(every))
    dist.barrier()
    dist.destroy_process_group()


def run(mode):
    args = [f'--{k}={v}' for k, v in dict(mode=mode, device=device, dtype=dtype, n_layer=n_layer, n_head=n_head,
                                          n_embd=n_embd, vocab_size=vocab_size, block_size=block_size,
                                          batch_size=batch_size, iters=iters).items()]
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
                           os.path.abspath(__file__), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: the {mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('memory: '))[8:])


if mode != 'both':
    measure()
else:
    with torch.device('meta'): # the shapes only
        params = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                               vocab_size=vocab_size, bias=False)).get_num_params(non_embedding=False)
    print(f"{params / 1e6:.0f}M parameters, {nproc} processes on {device}, {dtype}; peak memory of each process (GiB)")
    results = {m: run(m) for m in ('ddp', 'fsdp')}
    print(f"{'':6}{'process':>8}{'built':>8}{'training peak':>15}{'above start':>13}{'after gather':>14}")
    for m, every in results.items():
        for rank, f in enumerate(every):
            print(f"{m:6}{rank:>8}{f['built_peak'] / GiB:>8.2f}{f['peak'] / GiB:>15.2f}{f['above_start'] / GiB:>13.2f}"
                  f"{f['gather_peak'] / GiB:>14.2f}")
    ratio = max(f['peak'] for f in results['fsdp']) / max(f['peak'] for f in results['ddp'])
    ratio_above = max(f['above_start'] for f in results['fsdp']) / max(f['above_start'] for f in results['ddp'])
    print(f"fsdp/ddp training peak: {ratio:.2f}, above start: {ratio_above:.2f}")
