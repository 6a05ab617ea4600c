"""
A much shorter version of train.py for benchmarking: ms per training iteration, tokens/s and MFU.
With --mode=sample it times generation instead: at batch 1 with and without the KV cache, and a batch of 10.
$ python bench.py                  # GPT-2 124M on a GPU; on CPU the model of nanoGPT's CPU recipe
$ python bench.py --mode=sample    # a GPT-2-small-sized model: 16-token prompt, 256 new tokens, batch 1 and 10
$ python bench.py --profile=True   # a torch.profiler trace in bench_log/ (chrome://tracing or ui.perfetto.dev)
$ python bench.py --compare=True   # ours against nanoGPT's setup, timed in turns (a busy machine slows both alike)
$ python bench.py --optimizer=muon # an iteration with Muon for the Blocks' matrices (optimizers.py)
stdout holds the figures; notes on the setup go to stderr.
"""

import errors
errors.install() # first: a Ctrl-C during the slow imports below ends in one line too

import os
import resource
import statistics
import sys
import time
from typing import Literal

import torch

import hardware
from configurator import at_least, configure, optional
from dataloader import get_batch, open_dataset
from errors import UserError
from model import GPT, GPTConfig
from optimizers import configure_optimizers, optimizer_step
from tokenizer import dataset_vocab

# -----------------------------------------------------------------------------
mode: Literal['train', 'sample'] = 'train' # 'train': time training iterations; 'sample': time generation (KV cache, batch)
device: str = hardware.default_device() # examples: 'cpu', 'cuda', 'cuda:0', 'mps'
dtype: hardware.DTYPES = None # 'float32', 'bfloat16' or 'float16'; None: the device's best (hardware.default_dtype)
compile: bool = True # use PyTorch 2.0 to compile the model to be faster; the compilation is in the untimed warm-up
profile: bool = False # use pytorch profiler (train mode), or just simple benchmarking?
seed: at_least(0) = 1337 # the model's weights, and the batches, follow from it
# the model: None picks GPT-2 124M, except for training on CPU, where it picks the model of nanoGPT's CPU
# recipe (README: shakespeare_char, 4 layers of 128, block 64), whose iterations take ms, not minutes
n_layer: optional(at_least(1)) = None # None: 12, or 4 for training on CPU
n_head: optional(at_least(1)) = None # None: 12, or 4 for training on CPU
n_embd: optional(at_least(1)) = None # None: 768, or 128 for training on CPU
block_size: optional(at_least(1)) = None # None: 1024, or 64 for training on CPU
vocab_size: optional(at_least(1)) = None # a dataset's meta.pkl sets it, as in train.py
bias: bool = False # train.py's default; GPT-2 itself has biases (--bias=True)
# train mode
dataset: optional(str) = None # None: shakespeare_char for the CPU recipe, else openwebtext
real_data: bool = True # batches of data/<dataset>/train.bin (as train.py draws them) if it exists, else random tokens
batch_size: at_least(1) = 12 # sequences in a training iteration
burn_in_iters: at_least(0) = 10 # untimed iterations first (a compile, warm caches)
timed_iters: at_least(1) = 20 # timed iterations, after the untimed ones
optimizer: Literal['adamw', 'muon'] = 'adamw' # as train.py's: AdamW, or Muon for the Blocks' matrices (its defaults) and AdamW for the rest
compare: bool = False # also time nanoGPT's own setup (eager, for-each AdamW off CUDA) in turns with ours; prints the ratio
rounds: at_least(1) = 10 # with compare: turns of timed_iters for each
# sample mode
prompt_tokens: at_least(1) = 16 # the prompt's length, random tokens
max_new_tokens: at_least(1) = 256 # tokens generated in each timing
num_samples: at_least(1) = 10 # the batch timed beside batch 1: samples of one prompt, as sample.py draws them
configure(globals(), sys.argv[1:], explain=hardware.explain)
# -----------------------------------------------------------------------------
out = errors.result_stream() # the figures; notes on the setup go to stderr
def report(line):
    print(line, file=out, flush=True)

dtype, ctx = hardware.setup(device, dtype)
device_type = torch.device(device).type
if (profile or compare) and mode != 'train':
    raise UserError("profile=True and compare=True time training iterations; use them with --mode=train")
if profile and compare:
    raise UserError("profile=True and compare=True do not go together; pick one")
cpu_recipe = mode == 'train' and device_type == 'cpu'
n_layer = n_layer or (4 if cpu_recipe else 12)
n_head = n_head or (4 if cpu_recipe else 12)
n_embd = n_embd or (128 if cpu_recipe else 768)
block_size = block_size or (64 if cpu_recipe else 1024)
vocab_size = vocab_size or (65 if cpu_recipe else 50304) # shakespeare_char's characters; GPT-2's 50257, padded
dataset = dataset or ('shakespeare_char' if cpu_recipe else 'openwebtext')

torch.manual_seed(seed)
torch.manual_seed(seed)

# data loading init (train mode)
data_dir = os.path.join('data', dataset)
use_data = mode == 'train' and real_data and os.path.exists(os.path.join(data_dir, 'train.bin'))
if use_data:
    data = open_dataset(data_dir, block_size)
    if data['meta.pkl'] is not None:
        vocab_size = dataset_vocab(data_dir, data['meta.pkl'])['vocab_size']
        print(f"data: {data_dir}/train.bin, vocab_size = {vocab_size} (inside {data_dir}/meta.pkl)")
    elif vocab_size < 50257:
        raise UserError(f"{data_dir}/train.bin holds GPT-2 tokens (there is no meta.pkl): vocab_size={vocab_size} "
                        f"is too small; use --vocab_size=50304")
    else:
        print(f"data: {data_dir}/train.bin, GPT-2 tokens")
    get_train_batch = lambda it: get_batch(data, 'train', batch_size, block_size, seed, it, 0, device)
elif mode == 'train':
    print("data: random tokens" + ("" if not real_data else f" (no {data_dir}/train.bin: prepare it for real data)"))

# model init: a size that cannot fit is refused in one line, before any tensor is made
if n_embd % n_head != 0:
    raise UserError(f"n_embd={n_embd} is not divisible by n_head={n_head}; each head gets n_embd/n_head dimensions")
hardware.check_fits(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                              vocab_size=vocab_size), device, batch_size if mode == 'train' else num_samples)
if mode == 'train' and not use_data:
    # alternatively, if fixed data is desired to not care about data loading
    x = torch.randint(vocab_size, (batch_size, block_size), device=device)
    y = torch.randint(vocab_size, (batch_size, block_size), device=device)
    get_train_batch = lambda it: (x, y)

def new_model(compiled):
    torch.manual_seed(seed) # the same weights every time: a comparison starts from the same point
    model = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                          vocab_size=vocab_size, bias=bias, dropout=0.0)) # dropout 0 for determinism
    model.to(device)
    if compiled:
        # in place: torch.compile(model) would return a wrapper whose generate() still calls the uncompiled forward
        model.compile()
    return model

model = new_model(compile)
print(f"{mode} mode on {device} in {dtype}{', compiled' if compile else ''}: n_layer={n_layer}, n_head={n_head}, "
      f"n_embd={n_embd}, block_size={block_size}, vocab_size={vocab_size}, bias={bias}")

# -----------------------------------------------------------------------------

def train_iteration(model, optimizers, scaler, it):
    """One iteration of train.py without gradient accumulation; returns the loss, a tensor on the device."""
    X, Y = get_train_batch(it)
    with ctx:
        logits, loss = model(X, Y)
    scaler.scale(loss).backward()
    optimizer_step(optimizers, scaler, model.parameters(), grad_clip=1.0)
    return loss.detach()


def trainer(model, nanogpt=False):
    """A function that trains model for n iterations from iteration first and returns the seconds per iteration
    and the last loss. The device finishes its queued work before each clock reading, so the time covers all of it.
    nanogpt: nanoGPT's AdamW, which it fuses on CUDA only."""
    if nanogpt:
        optimizers = [model.configure_optimizers(weight_decay=1e-2, learning_rate=1e-4, betas=(0.9, 0.95),
                                                 device_type=device_type, fused=None if device_type == 'cuda' else False)]
    else: # train.py's, with its defaults for Muon
        optimizers = configure_optimizers(model, optimizer, 1e-2, 1e-4, (0.9, 0.95), device_type, dtype, muon_lr=0.02,
                                          muon_momentum=0.95, muon_weight_decay=0.0, muon_lr_adjust='original')
    # float16 needs a GradScaler, as in train.py; a no-op otherwise
    scaler = hardware.grad_scaler(device, dtype)

    def train(first, n):
        hardware.synchronize(device)
        t0, loss = time.perf_counter(), None
        for it in range(first, first + n):
            loss = train_iteration(model, optimizers, scaler, it)
        hardware.synchronize(device)
        return (time.perf_counter() - t0) / max(n, 1), loss
    return train, optimizers, scaler


def bench_train():
    train, optimizers, scaler = trainer(model)

    if profile:
        # useful docs on pytorch profiler:
        # - tutorial https://pytorch.org/tutorials/intermediate/tensorboard_profiler_tutorial.html
        # - api https://pytorch.org/docs/stable/profiler.html#torch.profiler.profile
        wait, warmup, active = 5, 5, 5
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device_type == 'cuda':
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=torch.profiler.tensorboard_trace_handler('./bench_log', use_gzip=True),
            record_shapes=True,
            profile_memory=True,
            with_stack=True, # incurs an additional overhead, disable if not needed
            with_flops=True,
        ) as prof:
            for k in range(wait + warmup + active):
                lossf = train_iteration(model, optimizers, scaler, k).item()
                print(f"{k}/{wait + warmup + active} loss: {lossf:.4f}")
                prof.step() # notify the profiler at end of each step
        sort_by = 'self_cuda_time_total' if device_type == 'cuda' else 'self_cpu_time_total'
        report(prof.key_averages().table(sort_by=sort_by, row_limit=15))
        print("trace written to bench_log/ (open it in chrome://tracing or ui.perfetto.dev)")
        return

    # simple benchmarking: burn-in (compilation included), then timed iterations
    train(0, burn_in_iters)
    dt, loss = train(burn_in_iters, timed_iters)
    peak = hardware.peak_flops(device, dtype)
    measured = " (measured: the fastest 2048x2048 float32 matmul)" if device_type != 'cuda' else ""
    report(f"loss after {burn_in_iters + timed_iters} iterations: {loss.item():.4f}")
    report(f"time per iteration: {dt * 1000:.2f}ms (mean of {timed_iters}, after {burn_in_iters} untimed)")
    report(f"tokens/s: {batch_size * block_size / dt:,.0f} ({batch_size} x {block_size} tokens per iteration)")
    report(f"device peak: {peak / 1e12:.3f} TFLOP/s{measured}")
    report(f"MFU: {model.estimate_mfu(batch_size, dt, peak) * 100:.2f}%")
    report(f"peak memory: {peak_memory()}")

    if compare:
        # nanoGPT with --compile=False, as in its CPU recipe: it fuses AdamW on CUDA only
        nanogpt_train = trainer(new_model(compiled=False), nanogpt=True)[0]
        nanogpt_train(0, burn_in_iters)
        ours, nanogpt = [], []
        for turn in range(rounds): # in turns, so that a machine busy with something else slows both alike
            first = burn_in_iters + (turn + 1) * timed_iters # the iteration only picks the batch
            ours.append(train(first, timed_iters)[0])
            nanogpt.append(nanogpt_train(first, timed_iters)[0])
        ours, nanogpt = statistics.median(ours), statistics.median(nanogpt)
        report(f"nanoGPT's setup (eager, {'fused' if device_type == 'cuda' else 'for-each'} AdamW): "
               f"{nanogpt * 1000:.2f}ms/iter; ours ({'compiled' if compile else 'eager'}, "
               f"{'fused AdamW' if optimizer == 'adamw' else 'Muon and fused AdamW'}): "
              f"{ours * 1000:.2f}ms/iter; {nanogpt / ours:.2f}x (medians of {rounds} turns of {timed_iters} iterations)")


def peak_memory():
    """The most memory the run has held so far: what torch allocated on the GPU, or elsewhere this process's resident
    high-water mark (on MPS that leaves the GPU's out)."""
    if device_type == 'cuda':
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (the process's resident peak)" # kB


@torch.no_grad()
def bench_sample():
    model.eval()
    prompt = torch.randint(vocab_size, (1, prompt_tokens), device=device)

    def generate(num_tokens, use_cache, rows):
        torch.manual_seed(seed) # the same draws for both: the tokens must come out the same
        with ctx: # temperature and top_k of sample.py's defaults: the benchmark times what a user runs
            return model.generate(prompt, num_tokens, temperature=0.8, top_k=200, use_cache=use_cache,
                                  num_samples=rows)

    def timed(use_cache, rows=1):
        hardware.synchronize(device)
        t0 = time.perf_counter()
        tokens = generate(max_new_tokens, use_cache, rows)
        hardware.synchronize(device)
        return tokens, time.perf_counter() - t0

    for use_cache, rows in ((True, 1), (False, 1), (True, num_samples)):
        generate(4, use_cache, rows) # untimed warm-up, compilation included
    tokens_cached, dt_cached = timed(use_cache=True)
    tokens_uncached, dt_uncached = timed(use_cache=False) # nanoGPT's generate: the whole context for every token
    _, dt_batch = timed(use_cache=True, rows=num_samples)
    report(f"{prompt_tokens}-token prompt, {max_new_tokens} new tokens")
    report(f"batch 1 with KV cache:    {max_new_tokens / dt_cached:8.1f} tokens/s ({dt_cached * 1000 / max_new_tokens:.1f} ms/token)")
    report(f"batch 1 without KV cache: {max_new_tokens / dt_uncached:8.1f} tokens/s ({dt_uncached * 1000 / max_new_tokens:.1f} ms/token)")
    report(f"batch {num_samples} with KV cache:   {num_samples * max_new_tokens / dt_batch:8.1f} tokens/s "
          f"({dt_batch * 1000 / max_new_tokens:.1f} ms per step of {num_samples} tokens)")
    report(f"speedup of the KV cache: {dt_uncached / dt_cached:.1f}x; of a batch of {num_samples} over "
          f"{num_samples} at batch 1: {num_samples * dt_cached / dt_batch:.1f}x")
    same = torch.equal(tokens_cached, tokens_uncached)
    report(f"same tokens with and without the cache: {same}" + ("" if same or dtype == 'float32' else
          f" (in {dtype} the two paths round differently, so a near tie can go either way)"))
    report(f"peak memory: {peak_memory()}")


if mode == 'train':
    bench_train()
else:
    bench_sample()
