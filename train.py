"""
This training script can be run both on a single device in debug mode,
and also in a larger training run with distributed data parallel (ddp).

To run on a single GPU, example:
$ python train.py --batch_size=32 --compile=False

To run with DDP on 4 gpus on 1 node, example:
$ torchrun --standalone --nproc_per_node=4 train.py

To run with DDP on 4 gpus across 2 nodes, example:
- Run on the first (master) node with example IP 123.456.123.456:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
- Run on the worker node:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(If your cluster does not have Infiniband interconnect prepend NCCL_IB_DISABLE=1)

--fsdp=True shards weights, gradients and AdamW state over the processes (FSDP2, parallel.py) instead of copying
them; under torchrun --max-restarts=N, restarted processes go on from the run's newest checkpoint. Ctrl-C or SIGTERM
stops after the current iteration with a checkpoint (a second one stops at once); --init_from=resume goes on exactly
as if it had never stopped (checkpoint.py: ckpt.pt and last.pt). One run owns its out_dir; metrics go to log.jsonl.
"""

import errors
errors.install() # first: a Ctrl-C during the slow imports below ends in one line too

import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from contextlib import nullcontext
from typing import Literal

import torch
import torch.distributed as dist

import eval_hellaswag
import hardware
import parallel
from checkpoint import (CKPT, LAST, check_out_dir, checkpoint_to_resume, init_model, model_args_of, rng_state,
                        save_checkpoint, set_rng_state, take_out_dir)
from configurator import at_least, configure, fraction
from dataloader import check_dataset, epochs_ended, get_batch
from errors import UserError, first_line, writing
from model import GPT2_MODELS
from provenance import device_name, git_commit
from tokenizer import GPT2_VOCAB, Tokenizer, check_vocab, dataset_vocab, describe, has_saved_tokenizer

# -----------------------------------------------------------------------------
# default config values designed to train a gpt2 (124M) on OpenWebText
# I/O
out_dir: str = 'out'
eval_interval: at_least(1) = 2000
log_interval: at_least(1) = 1
eval_iters: at_least(1) = 200
eval_only: bool = False # if True, script exits right after the first eval
always_save_checkpoint: bool = True # if True, always save a checkpoint after each eval
checkpoint_interval: at_least(0) = 0 # also save the training state every this many iterations (see checkpoint.py); 0: at evals only
init_from: str = 'scratch' # 'scratch' or 'resume' or 'gpt2*' or a directory saved by transformers' save_pretrained
# wandb logging
wandb_log: bool = False # disabled by default
wandb_project: str = 'owt'
wandb_run_name: str = 'gpt2' # 'run' + str(time.time())
# data
dataset: str = 'openwebtext'
gradient_accumulation_steps: at_least(1) = 5 * 8 # used to simulate larger batch sizes; the total over all processes
batch_size: at_least(1) = 12 # if gradient_accumulation_steps > 1, this is the micro-batch size
block_size: at_least(1) = 1024
data_order: Literal['random', 'epoch'] = 'random' # nanoGPT's random windows, or each window of train.bin once an epoch
# model
n_layer: at_least(1) = 12
n_head: at_least(1) = 12
n_embd: at_least(1) = 768
dropout: fraction = 0.0 # for pretraining 0 is good, for finetuning try 0.1+
bias: bool = False # do we use bias inside LayerNorm and Linear layers?
# adamw optimizer
learning_rate: at_least(0.0) = 6e-4 # max learning rate
max_iters: at_least(0) = 600000 # total number of training iterations
weight_decay: float = 1e-1
beta1: float = 0.9
beta2: float = 0.95
grad_clip: at_least(0.0) = 1.0 # clip gradients at this value, or disable if == 0.0
# learning rate decay settings
decay_lr: bool = True # whether to decay the learning rate
warmup_iters: at_least(0) = 2000 # how many steps to warm up for
lr_decay_iters: at_least(0) = 600000 # should be ~= max_iters per Chinchilla
min_lr: at_least(0.0) = 6e-5 # minimum learning rate, should be ~= learning_rate/10 per Chinchilla
# DDP settings
backend: str = 'nccl' # 'nccl', 'gloo', etc.; runs off CUDA take gloo
fsdp: bool = False # shard weights, gradients and AdamW state over the processes (FSDP2) instead of copying them (DDP)
dist_timeout: at_least(1) = 600 # seconds a process waits on the others (a dead or stuck one) before it stops the run
# system
device: str = hardware.default_device() # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1' etc., or try 'mps' on macbooks
dtype: hardware.DTYPES = None # 'float32', 'bfloat16', or 'float16' (with a GradScaler); None: the best for the device
compile: Literal[True, False, None] = None # use PyTorch 2.0 to compile the model to be faster; None: on CUDA only
seed: at_least(0) = 1337 # the initial weights and every batch follow from it (process k of a torchrun adds k, for dropout)
# evaluation on HellaSwag (eval_hellaswag.py) at every eval; needs a model with GPT-2's vocabulary
hellaswag: bool = False
hellaswag_file: str = eval_hellaswag.DEFAULT_FILE # downloaded when absent; a file named here instead must exist
# -----------------------------------------------------------------------------
config = configure(globals(), sys.argv[1:]) # overrides from command line or config file
# -----------------------------------------------------------------------------

# various inits, derived attributes, I/O setup
ddp = int(os.environ.get('RANK', -1)) != -1 # is this a ddp run?
ddp_rank = int(os.environ.get('RANK', 0))
ddp_local_rank = int(os.environ.get('LOCAL_RANK', 0))
ddp_world_size = int(os.environ.get('WORLD_SIZE', 1))
master_process = ddp_rank == 0 # this process will do logging, checkpointing etc.
seed_offset = ddp_rank # each process gets a different seed
if ddp and device.startswith('cuda'):
    device = f'cuda:{ddp_local_rank}'
# torchrun --max-restarts starts every process again when one died: they go on from the run's newest checkpoint
restart_count = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))
run_id = os.environ.get('TORCHELASTIC_RUN_ID') # the same for all restarts of one torchrun

# every mistake in the config is reported here, before anything is written and before processes wait on each other
dtype, ctx = hardware.setup(device, dtype)
device_type = torch.device(device).type # for later use in torch.autocast
compile = device_type == 'cuda' if compile is None else compile
if decay_lr and lr_decay_iters < warmup_iters:
    raise UserError(f"lr_decay_iters={lr_decay_iters} is less than warmup_iters={warmup_iters}; the learning rate "
                    f"would decay before it has warmed up: set --lr_decay_iters to at least {warmup_iters}")
if init_from == 'scratch' and n_embd % n_head != 0:
    raise UserError(f"n_embd={n_embd} is not divisible by n_head={n_head}; each head gets n_embd/n_head dimensions")
if gradient_accumulation_steps % ddp_world_size != 0:
    raise UserError(f"gradient_accumulation_steps={gradient_accumulation_steps} is not divisible by the "
                    f"{ddp_world_size} processes; use a multiple of {ddp_world_size}")
fsdp = fsdp and ddp # one process has nothing to shard over
if master_process: # at once: a file, or another run's, is said before minutes of loading
    check_out_dir(out_dir)
if wandb_log:
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True but wandb is not installed; pip install wandb, or --wandb_log=False")

# resuming: the model's shape is the checkpoint's, as in nanoGPT. A torchrun restart resumes the run's own checkpoint.
checkpoint, ckpt_path = checkpoint_to_resume(out_dir, init_from, restart_count, run_id)
if checkpoint is not None:
    shape = {k: checkpoint['model_args'][k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias')}
    ignored = ", ".join(f"{k}={v} (not {config[k]})" for k, v in shape.items() if config[k] != v)
    if ignored and master_process:
        print(f"a resumed run keeps its model's shape: {ignored}")
    globals().update(shape)
    config.update(shape) # the checkpoints and the log record what runs
resumed = checkpoint is not None

gradient_accumulation_steps //= ddp_world_size
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
print(f"tokens per iteration will be: {tokens_per_iter:,}")
torch.manual_seed(seed + seed_offset)

# poor man's data loader: the batch of iteration i is a function of (seed, i, its rows), see dataloader.py
data_dir = os.path.join('data', dataset)
check_dataset(data_dir, block_size)
rows_per_step = batch_size * gradient_accumulation_steps * ddp_world_size # the global batch's rows

def get_train_batch(it, micro_step):
    # this process's rows of the global batch: gradient_accumulation_steps micro-batches of each process, in turn
    first_row = (ddp_rank * gradient_accumulation_steps + micro_step) * batch_size
    return get_batch(data_dir, 'train', batch_size, block_size, seed, it, first_row, device, data_order, rows_per_step)

# the vocabulary the token ids of the dataset stand for: its meta.pkl's characters, or GPT-2's BPE
vocab = dataset_vocab(data_dir)
print(f"the dataset's vocabulary: {describe(vocab)} (vocab_size = {vocab['vocab_size']})")

# model init
iter_num = 0
best_val_loss = 1e9
tokens = 0 # trained on so far
if resumed:
    print(f"Resuming training from {ckpt_path}" + (f" (torchrun restart {restart_count})" if restart_count else ""))
    check_vocab(checkpoint.get('vocab'), vocab, dataset, ckpt_path) # nanoGPT's checkpoints have none
    iter_num = checkpoint['iter_num']
    best_val_loss = float(checkpoint['best_val_loss']) # nanoGPT saved a tensor
    saved = checkpoint.get('config', {})
    tokens_per_iter_then = saved.get('gradient_accumulation_steps', 0) * saved.get('batch_size', 0) * block_size
    tokens = checkpoint.get('tokens', iter_num * (tokens_per_iter_then or tokens_per_iter)) # nanoGPT's: worked out
    changed = {k: (v, config[k]) for k, v in saved.items() if k in config and k != 'init_from' and v != config[k]}
    if changed and master_process:
        print("config changed since the checkpoint: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
else:
    print("Initializing a new model from scratch" if init_from == 'scratch' else f"Initializing from {init_from}")
    if init_from != 'scratch': # the vocabulary of GPT-2, or of the tokenizer saved in a transformers directory
        check_vocab(GPT2_VOCAB if init_from in GPT2_MODELS else
                    Tokenizer(init_from).vocab if has_saved_tokenizer(init_from) else None, vocab, dataset, init_from)
with parallel.building(fsdp and init_from == 'scratch' and not resumed): # FSDP: on the meta device; shard() fills it
    model = init_model('resume' if resumed else init_from, checkpoint, ckpt_path, dropout=dropout,
                       model_args=dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                                       vocab_size=50304 if vocab == GPT2_VOCAB else vocab['vocab_size'])) # 50304:
                                       # GPT-2's 50257 rounded up for efficiency
# crop down the model block size if desired, using model surgery
if block_size > model.config.block_size:
    raise UserError(f"block_size={block_size} is larger than the {model.config.block_size} positions of the model "
                    f"from init_from={init_from}; use --block_size={model.config.block_size} or less")
if block_size < model.config.block_size:
    model.crop_block_size(block_size)
model_args = model_args_of(model) # what the checkpoints record, as nanoGPT's do
if vocab['vocab_size'] > model_args['vocab_size']:
    trained_on = f" (it was trained on {checkpoint['config'].get('dataset')})" if resumed else ""
    raise UserError(f"dataset={dataset} has {vocab['vocab_size']} token ids but the model from init_from={init_from} "
                    f"knows only {model_args['vocab_size']}{trained_on}; pick a dataset of its vocabulary")
if hellaswag and vocab != GPT2_VOCAB:
    raise UserError(f"hellaswag=True needs a model of GPT-2's BPE, this one learns {describe(vocab)}; "
                    f"use --hellaswag=False")
if hellaswag:
    hellaswag_examples = eval_hellaswag.load_examples(hellaswag_file)

if wandb_log and master_process: # before out_dir is made: it fails without an API key or network
    try:
        wandb.init(project=wandb_project, name=wandb_run_name, config=config)
    except wandb.errors.Error as e:
        raise UserError(f"wandb cannot start ({first_line(e)}); without network or login run with "
                        f"WANDB_MODE=offline (and wandb sync later), or --wandb_log=False")

# the config is fine: from here on files get written, by this run alone
if master_process:
    take_out_dir(out_dir, new_run=not resumed and not eval_only)
if ddp:
    parallel.init_process_group(backend, device, dist_timeout, out_dir)
if fsdp:
    ctx = nullcontext() # FSDP has its MixedPrecisionPolicy instead
    parallel.shard(model, device, dtype, seed) # before the optimizer is made: it steps the shards
else:
    model.to(device)

scaler = hardware.grad_scaler(device, dtype) # float16's; a no-op otherwise

# optimizer
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
if checkpoint is not None:
    parallel.load_optimizer_state(model, optimizer, checkpoint['optimizer'])
    if checkpoint.get('scaler'):
        scaler.load_state_dict(checkpoint['scaler'])

# compile the model
raw_model = model # the plain GPT: checkpoints hold its weights, without torch.compile's '_orig_mod.' prefix
if compile:
    print("compiling the model... (takes a ~minute)")
    model = torch.compile(model) # requires PyTorch 2.0
eval_model = model # evaluation needs no DDP wrapper: there are no gradients to share

# wrap model into DDP container (FSDP's sharded model needs none)
if ddp:
    model = parallel.wrap(model, device)

if checkpoint is not None:
    set_rng_state(checkpoint.get('rng'), ddp_rank, ddp_world_size, device)
checkpoint = None # free up memory

# helps estimate an arbitrarily accurate loss over either split using many batches
@torch.no_grad()
def estimate_loss():
    # the same eval_iters batches every time (from their own seed): evals then differ only by the model.
    # The processes share them out and add up their losses.
    out = {}
    eval_model.eval()
    for split in ['train', 'val']:
        loss_sum = torch.zeros((), device=device)
        for k, counted in parallel.share(eval_iters, ddp_rank, ddp_world_size):
            X, Y = get_batch(data_dir, split, batch_size, block_size, seed + 1, k, 0, device)
            with ctx:
                logits, loss = eval_model(X, Y)
            if counted: # not a batch that only keeps FSDP's processes in step
                loss_sum += loss.float()
        if ddp:
            dist.all_reduce(loss_sum)
        out[split] = loss_sum.item() / eval_iters
    eval_model.train()
    return out

# learning rate decay scheduler (cosine with warmup)
def get_lr(it):
    # 1) linear warmup for warmup_iters steps
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) if it >= lr_decay_iters, return min learning rate
    if it >= lr_decay_iters:
        return min_lr
    # 3) in between, use cosine decay down to min learning rate
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)

# what a run needs to be repeated or compared: saved in every checkpoint and first in log.jsonl
provenance = dict(config=config, git_commit=git_commit(), python=platform.python_version(), torch=str(torch.__version__),
                  device=device, device_name=device_name(device), dtype=dtype, world_size=ddp_world_size, run_id=run_id)

def save(reason, name):
    """Writes the whole training state to out_dir/name, CKPT or LAST (see checkpoint.py). Every process calls it:
    they hand in their RNG states."""
    rngs = parallel.gather(rng_state(device))
    parallel.check_weights_identical(raw_model) # DDP: the processes applied the same averaged gradients
    model_state, optimizer_state = parallel.full_state(raw_model, optimizer) # FSDP: gathered to rank 0's CPU
    if master_process:
        checkpoint = {'model': model_state, 'optimizer': optimizer_state, 'model_args': model_args,
                      'iter_num': iter_num, 'best_val_loss': best_val_loss, 'config': config, # nanoGPT's keys
                      'scaler': scaler.state_dict(), 'rng': rngs, 'provenance': provenance, 'vocab': vocab,
                      'tokens': tokens} # what an exact resume needs too, and what the token ids mean
        same = f", weights identical on all {ddp_world_size} processes" if ddp and not fsdp else ""
        print(f"saving checkpoint to {os.path.join(out_dir, name)} ({reason}, iter {iter_num}{same})")
        save_checkpoint(checkpoint, os.path.join(out_dir, name), kept())
        if name == CKPT and os.path.exists(os.path.join(out_dir, LAST)):
            os.remove(os.path.join(out_dir, LAST)) # older than ckpt.pt now

def kept():
    return f"the checkpoint of iter {saved_iter} in {out_dir} is kept" if saved_iter is not None else \
        "no checkpoint was written"

# logging: log.jsonl holds the history of every run in out_dir (never truncated), wandb if asked for
log_path = os.path.join(out_dir, 'log.jsonl')
def log(record):
    with writing(log_path, kept()):
        log_file.write(json.dumps(record) + '\n') # json writes floats exactly: runs compare bit for bit

saved_iter = iter_num if resumed else None # the iteration of the newest checkpoint in out_dir
if master_process:
    with writing(log_path, kept()):
        log_file = open(log_path, 'a', buffering=1)
    log({'provenance': provenance})
    if restart_count:
        log({'restart': restart_count, 'iter': iter_num})
    if resumed and tokens_per_iter != (tokens_per_iter_then or tokens_per_iter):
        log({'iter': iter_num, 'tokens_per_iter': tokens_per_iter, 'was': tokens_per_iter_then})

def diverged(name, value):
    # a NaN or inf loss: stop rather than train on garbage, and leave the last good checkpoint alone
    return UserError(f"{name} is {value} at iter {iter_num}: training diverged; lower --learning_rate ({kept()})")

# a signal only raises a flag: the iteration finishes, the processes agree to stop, and a checkpoint is written.
# A second one stops at once (an eval can take minutes), leaving the checkpoints as they are.
# torchrun passes a SIGINT or SIGTERM on to every process, and kills them 30 s later.
stop_signal = None
def request_stop(signum, frame):
    global stop_signal
    if stop_signal is not None:
        print(f"{signal.Signals(signum).name} again: stopping now, without a checkpoint", flush=True)
        os._exit(128 + signum) # what the shell reports for a process killed by the signal
    print(f"{signal.Signals(signum).name}: stopping after this iteration (again to stop now)", flush=True)
    stop_signal = signal.Signals(signum).name
signal.signal(signal.SIGINT, request_stop)
signal.signal(signal.SIGTERM, request_stop)

# training loop
X, Y = get_train_batch(iter_num, 0) # fetch the very first batch
local_iter_num = 0 # number of iterations in the lifetime of this process
# ckpt.pt holds the model to sample: the latest state, or with always_save_checkpoint=False the best on val, and
# then the latest state between evals goes to last.pt (checkpoint.py)
latest = CKPT if always_save_checkpoint else LAST
peak_flops = None # measured when first needed: on CPU this takes a moment
running_mfu = -1.0
while True:

    # determine and set the learning rate for this iteration
    lr = get_lr(iter_num) if decay_lr else learning_rate
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr

    # evaluate the loss on train/val sets and write checkpoints
    if iter_num % eval_interval == 0 or iter_num == max_iters:
        losses = estimate_loss()
        record = {'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
                  'tokens': tokens} # the tokens trained on so far
        if hellaswag:
            result = eval_hellaswag.evaluate_hellaswag(eval_model, hellaswag_examples, device, ctx, ddp_rank, ddp_world_size)
            record.update(hellaswag_acc=result['acc'], hellaswag_acc_norm=result['acc_norm'])
        if master_process:
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if hellaswag:
                print(f"step {iter_num}: hellaswag acc_norm {result['acc_norm']:.4f}, acc {result['acc']:.4f}")
            log(record)
            if wandb_log:
                wandb.log({"iter": iter_num, "train/loss": losses['train'], "val/loss": losses['val'], "lr": lr,
                           "mfu": running_mfu*100, # convert to percentage
                           **({"hellaswag/acc_norm": record['hellaswag_acc_norm']} if hellaswag else {})},
                          step=iter_num)
        if not math.isfinite(losses['val']):
            raise diverged('val loss', losses['val'])
        improved = losses['val'] < best_val_loss
        best_val_loss = min(best_val_loss, losses['val'])
        if (improved or always_save_checkpoint) and iter_num > 0 and iter_num != saved_iter and not eval_only:
            save('val loss improved' if improved else 'always_save_checkpoint', CKPT)
            saved_iter = iter_num
    if checkpoint_interval and iter_num % checkpoint_interval == 0 and iter_num not in (0, saved_iter) \
            and not eval_only:
        save('checkpoint_interval', latest)
        saved_iter = iter_num
    if eval_only or iter_num >= max_iters:
        break

    # forward backward update, with optional gradient accumulation to simulate larger batch size
    # and using the GradScaler if data type is float16
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    for micro_step in range(gradient_accumulation_steps):
        last = micro_step == gradient_accumulation_steps - 1
        # gradients are averaged over the processes in the backward pass of the last micro step only
        with parallel.gradient_sync(model, last):
            with ctx:
                logits, loss = model(X, Y)
                loss = loss / gradient_accumulation_steps # scale the loss to account for gradient accumulation
            # immediately async prefetch next batch while model is doing the forward pass on the GPU
            X, Y = get_train_batch(iter_num + 1, 0) if last else get_train_batch(iter_num, micro_step + 1)
            # backward pass, with gradient scaling if training in fp16
            scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    # clip the gradient
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    # step the optimizer and scaler if training in fp16
    scaler.step(optimizer)
    scaler.update()
    # flush the gradients as soon as we can, no need for this memory anymore
    optimizer.zero_grad(set_to_none=True)
    # the loss of the whole global batch, and whether any process was asked to stop: one sync per iteration
    stats = torch.stack([loss_sum, torch.tensor(float(stop_signal is not None), device=device)])
    if ddp:
        dist.all_reduce(stats)
        stats[0] /= ddp_world_size
    lossf, stop = stats.tolist()

    # timing and logging
    dt = time.perf_counter() - t0
    tokens += tokens_per_iter
    if not math.isfinite(lossf):
        raise diverged('loss', lossf)
    if iter_num % log_interval == 0 and master_process:
        if local_iter_num >= 5: # let the training loop settle a bit
            peak_flops = peak_flops or hardware.peak_flops(device, dtype)
            mfu = raw_model.estimate_mfu(batch_size * gradient_accumulation_steps, dt, peak_flops)
            running_mfu = mfu if running_mfu == -1.0 else 0.9*running_mfu + 0.1*mfu
        print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%")
        log({'iter': iter_num, 'loss': lossf, 'lr': lr, 'dt_ms': dt * 1000,
             'mfu': running_mfu if running_mfu >= 0 else None, 'tokens': tokens})
        if wandb_log:
            wandb.log({"iter": iter_num, "train/iter_loss": lossf, "lr": lr, "ms_per_iter": dt * 1000,
                       "tokens": tokens}, step=iter_num)
    for epoch in epochs_ended(data_dir, block_size, data_order, rows_per_step, iter_num):
        if master_process: # data_order='epoch': this iteration read the last windows of an epoch
            print(f"iter {iter_num}: end of epoch {epoch} of the training data")
            log({'iter': iter_num, 'epoch': epoch, 'tokens': tokens})
    iter_num += 1
    local_iter_num += 1

    # termination conditions
    if stop:
        save(f"stopped by {stop_signal or 'another process'}", latest)
        saved_iter = iter_num
        args = [a for a in sys.argv[1:] if not a.startswith('--init_from=')] + ['--init_from=resume']
        if master_process:
            print(f"stopped at iter {iter_num}; to go on: python train.py {shlex.join(args)}"
                  + (" (under the same torchrun)" if ddp else ""))
        break

# nanoGPT never saved the updates after the last eval: the end of training gets a checkpoint of its own
if not eval_only and iter_num != saved_iter:
    save('end of training', latest)
if master_process and wandb_log:
    wandb.finish()
if ddp:
    dist.barrier() # a process that leaves while another still writes the checkpoint can abort it (gloo)
    dist.destroy_process_group()
