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

--fsdp=True shards the model over the processes (parallel.py); under torchrun --max-restarts=N, restarted processes
go on from the newest checkpoint. Ctrl-C stops within a micro step, saved (stops.py); --init_from=resume goes on
exactly, with the run's own settings (checkpoint.py). stdout is the run's log (runlog.py); notes go to stderr.
"""

import errors
errors.install() # first: a Ctrl-C during the slow imports below ends in one line too

import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from typing import Literal

import torch
import torch.distributed as dist

import eval_hellaswag
import hardware
import parallel
from checkpoint import (CKPT, LAST, check_out_dir, checkpoint_to_resume, init_model, model_args_of, resume_settings,
                        rng_state, run_so_far, save_checkpoint, set_rng_state, take_out_dir)
from configurator import at_least, between, configure, fraction
from dataloader import BadTokens, check_same_dataset, check_token_ids, epochs_ended, get_batch, open_dataset
from errors import UserError
from model import GPT2_MODELS, GPTConfig
from optimizers import CHECKPOINT_KEYS, check_optimizer, configure_optimizers, load_state, optimizer_step, set_lr
from provenance import run_record
from runlog import RunLog, progress, summary
from stops import Stop
from tokenizer import (GPT2_VOCAB, Tokenizer, check_vocab, dataset_vocab, describe, has_saved_tokenizer, text_bytes,
                       text_nats_and_bytes)

# -----------------------------------------------------------------------------
# default config values designed to train a gpt2 (124M) on OpenWebText
# I/O
out_dir: str = 'out' # the run's directory: checkpoints, log.jsonl; one run at a time
eval_interval: at_least(1) = 2000 # estimate the train and val loss every this many iterations
log_interval: at_least(1) = 1 # print and log the loss every this many iterations
eval_iters: at_least(1) = 200 # batches per split in each loss estimate
eval_only: bool = False # if True, script exits right after the first eval
always_save_checkpoint: bool = True # if True, always save a checkpoint after each eval
checkpoint_interval: at_least(0) = 0 # also save the training state every this many iterations (see checkpoint.py); 0: at evals only
init_from: str = 'scratch' # 'scratch' or 'resume' (out_dir's run, with its own settings) or 'gpt2*' or a directory saved by transformers' save_pretrained
# wandb logging
wandb_log: bool = False # also log to wandb (WANDB_MODE=offline logs without a network)
wandb_project: str = 'owt' # the wandb project
wandb_run_name: str = 'gpt2' # the wandb run's name
# data
dataset: str = 'openwebtext' # trains on data/<dataset>/train.bin, evaluates on val.bin
gradient_accumulation_steps: at_least(1) = 5 * 8 # used to simulate larger batch sizes; the total over all processes
batch_size: at_least(1) = 12 # if gradient_accumulation_steps > 1, this is the micro-batch size
block_size: at_least(1) = 1024 # tokens of context
data_order: Literal['random', 'epoch'] = 'random' # nanoGPT's random windows, or each window of train.bin once an epoch
# model
n_layer: at_least(1) = 12 # transformer blocks
n_head: at_least(1) = 12 # attention heads in each block
n_embd: at_least(1) = 768 # embedding width, a multiple of n_head
dropout: fraction = 0.0 # for pretraining 0 is good, for finetuning try 0.1+
bias: bool = False # do we use bias inside LayerNorm and Linear layers?
# adamw optimizer
learning_rate: at_least(0.0) = 6e-4 # max learning rate
max_iters: at_least(0) = 600000 # total number of training iterations
weight_decay: at_least(0.0) = 1e-1 # AdamW's decoupled weight decay of the 2D weights
beta1: between(0.0, 1.0, high_open=True) = 0.9 # AdamW's beta1
beta2: between(0.0, 1.0, high_open=True) = 0.95 # AdamW's beta2
grad_clip: at_least(0.0) = 1.0 # clip gradients at this value, or disable if == 0.0
# muon optimizer: with optimizer='muon', Muon trains the Blocks' weight matrices and AdamW (above) the rest
optimizer: Literal['adamw', 'muon'] = 'adamw' # 'muon': Muon for attention's and the MLPs' weight matrices, AdamW for the embeddings, LayerNorms and biases (docs/muon.md)
muon_lr: at_least(0.0) = 0.02 # Muon's peak learning rate; the schedule below scales it as it scales learning_rate
muon_momentum: fraction = 0.95 # Muon's Nesterov momentum
muon_weight_decay: at_least(0.0) = 0.0 # decoupled, as AdamW's: each step multiplies the matrices by 1 - lr * muon_weight_decay
muon_lr_adjust: Literal['original', 'match_rms_adamw'] = 'original' # Muon's lr for a matrix of shape (rows, columns): 'original' times sqrt(max(1, rows/columns)) (Keller Jordan's), 'match_rms_adamw' times 0.2 sqrt(max(rows, columns)) (Moonshot's, for AdamW-sized lrs)
# learning rate decay settings
decay_lr: bool = True # whether to decay the learning rate
warmup_iters: at_least(0) = 2000 # how many steps to warm up for
lr_decay_iters: at_least(0) = 600000 # should be ~= max_iters per Chinchilla
min_lr: at_least(0.0) = 6e-5 # minimum learning rate, should be ~= learning_rate/10 per Chinchilla
# DDP settings
backend: Literal['nccl', 'gloo', 'mpi'] = 'nccl' # torch.distributed's backend under torchrun; runs off CUDA take gloo
fsdp: bool = False # shard weights, gradients and AdamW state over the processes (FSDP2) instead of copying them (DDP)
dist_timeout: between(1, 10**9) = 600 # seconds a process waits on the others (a dead or stuck one) before it stops the run
# system
device: str = hardware.default_device() # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1' etc., or try 'mps' on macbooks
dtype: hardware.DTYPES = None # 'float32', 'bfloat16', or 'float16' (with a GradScaler); None: the best for the device
compile: Literal[True, False, None] = None # use PyTorch 2.0 to compile the model to be faster; None: on CUDA only
seed: between(0, 2**62) = 1337 # the initial weights and every batch follow from it (process k of a torchrun adds k, for dropout)
# evaluation on HellaSwag (eval_hellaswag.py) at every eval; needs a model with GPT-2's vocabulary
hellaswag: bool = False # score HellaSwag at every eval (a GPT-2 BPE model)
hellaswag_file: str = eval_hellaswag.DEFAULT_FILE # downloaded when absent; a file named here instead must exist
# -----------------------------------------------------------------------------
config = configure(globals(), sys.argv[1:], explain=hardware.explain) # overrides from command line or config file
# -----------------------------------------------------------------------------

# this process's standard output is the run's log (runlog.py); notes and errors go to stderr
out = errors.result_stream()
stop = Stop(out) # a signal, a stream that cannot be written, bad data: the run stops at the next point all pass

# various inits, derived attributes, I/O setup
ddp, ddp_rank, ddp_local_rank, ddp_world_size = parallel.environment() # under torchrun, or one process
master_process = ddp_rank == 0 # this process will do logging, checkpointing etc.
seed_offset = ddp_rank # each process gets a different seed
# torchrun --max-restarts starts every process again when one died: they go on from the run's newest checkpoint
restart_count, run_id = parallel.restart() # run_id: the same for all restarts of one torchrun

if master_process: # at once: a file, or another run's, is said before minutes of loading
    check_out_dir(out_dir)

# resuming: the run goes on with its own settings, from its checkpoint, under a config file and the command line.
# A torchrun restart resumes the run's own checkpoint.
checkpoint, ckpt_path = checkpoint_to_resume(out_dir, init_from, restart_count, run_id)
resumed = checkpoint is not None
notes = resume_settings(checkpoint, ckpt_path, globals(), config) if resumed else []
if notes and master_process:
    print('\n'.join(notes))
if ddp and device.startswith('cuda'):
    device = f'cuda:{ddp_local_rank}'

# every mistake in the config is reported here, before anything is written and before processes wait on each other
check_optimizer(optimizer, checkpoint, ckpt_path) # a torch with Muon; a resume with the optimizer it was trained with
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

gradient_accumulation_steps //= ddp_world_size
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
print(f"tokens per iteration will be: {tokens_per_iter:,}")
torch.manual_seed(seed + seed_offset)

# poor man's data loader: the batch of iteration i is a function of (seed, i, its rows), see dataloader.py
data_dir = os.path.join('data', dataset)
data = open_dataset(data_dir, block_size) # open for the whole run: a dataset moved in meanwhile changes nothing here
# the vocabulary the token ids of the dataset stand for: its meta.pkl's characters or trained BPE, or GPT-2's BPE
vocab = dataset_vocab(data_dir, data['meta.pkl'])
print(f"the dataset's vocabulary: {describe(vocab)} (vocab_size = {vocab['vocab_size']})")
token_bytes = text_bytes(vocab) # the bytes of text each token id stands for: losses in bits per byte, comparable
token_bytes = torch.tensor(token_bytes, device=device) if token_bytes is not None else None # across vocabularies
check_token_ids(data, vocab['vocab_size']) # a sample of the files now, every batch as it is read
rows_per_step = batch_size * gradient_accumulation_steps * ddp_world_size # the global batch's rows

def get_train_batch(it, micro_step): # this process's rows of the global batch: its micro-batches, in turn
    first_row = (ddp_rank * gradient_accumulation_steps + micro_step) * batch_size
    return checked(get_batch, data, 'train', batch_size, block_size, seed, it, first_row, device, data_order,
                   rows_per_step)

def checked(get_batch, *args):
    """A batch whose ids are all in the vocabulary. One that is not stops the run with the state of the last finished
    iteration: what is returned instead (zeros) never reaches the model, whose process stops at the next check."""
    try:
        return get_batch(*args, vocab_size=vocab['vocab_size'])
    except BadTokens as e:
        stop.request(f"{e}", error=True)
        return (torch.zeros(batch_size, block_size, dtype=torch.long, device=device),) * 2

# model init
iter_num, best_val_loss, best_iter, tokens = 0, 1e9, None, 0 # best_iter: best_val_loss's; tokens: trained on
tokens_per_iter_then = tokens_per_iter
if resumed:
    print(f"Resuming training from {ckpt_path}" + (f" (torchrun restart {restart_count})" if restart_count else ""))
    check_vocab(checkpoint.get('vocab'), vocab, dataset, ckpt_path) # nanoGPT's checkpoints have none
    iter_num, best_val_loss, best_iter, tokens, tokens_per_iter_then = run_so_far(checkpoint, tokens_per_iter)
else:
    print("Initializing a new model from scratch" if init_from == 'scratch' else f"Initializing from {init_from}")
    if init_from != 'scratch': # the vocabulary of GPT-2, or of the tokenizer saved in a transformers directory
        check_vocab(GPT2_VOCAB if init_from in GPT2_MODELS else
                    Tokenizer(init_from).vocab if has_saved_tokenizer(init_from) else None, vocab, dataset, init_from)
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                  vocab_size=50304 if vocab == GPT2_VOCAB else vocab['vocab_size']) # GPT-2's 50257, padded
if init_from == 'scratch' and not resumed: # said before a model too large for the memory is built
    hardware.check_fits(GPTConfig(**model_args), device, batch_size, ddp_world_size if fsdp else 1)
with parallel.building(fsdp and init_from == 'scratch' and not resumed): # FSDP: on the meta device; shard() fills it
    model = init_model('resume' if resumed else init_from, checkpoint, ckpt_path, dropout=dropout,
                       model_args=model_args)
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
if hellaswag: # a model of a byte-level BPE, GPT-2's or a trained one
    hellaswag_examples, hellaswag_tokenizer = eval_hellaswag.for_training(hellaswag_file, vocab)
if master_process and not eval_only: # a run far longer than its user likely expects is said, never refused
    for line in hardware.long_run_warning(model, rows_per_step // ddp_world_size, max_iters - iter_num, device,
                                          dtype, dataset):
        print(line)

runlog = RunLog(out, master_process, out_dir) # stdout, log.jsonl and wandb
say, still_working, stopping = runlog.say, runlog.still_working, stop.agreed
if wandb_log and master_process:
    runlog.start_wandb(wandb_project, wandb_run_name, config)

# the config is fine: from here on files get written, by this run alone
if master_process:
    take_out_dir(out_dir, new_run=not resumed and not eval_only)
if ddp:
    parallel.init_process_group(backend, device, dist_timeout, out_dir)
    check_same_dataset(data, data_dir)
if fsdp:
    ctx = nullcontext() # FSDP has its MixedPrecisionPolicy instead
    parallel.shard(model, device, dtype, seed) # before the optimizer is made: it steps the shards
else:
    model.to(device)

scaler = hardware.grad_scaler(device, dtype) # float16's; a no-op otherwise

# optimizer: [AdamW], or [AdamW, Muon] (optimizers.py)
optimizers = configure_optimizers(model, optimizer, weight_decay, learning_rate, (beta1, beta2), device_type, dtype,
                                  muon_lr, muon_momentum, muon_weight_decay, muon_lr_adjust)
if checkpoint is not None:
    load_state(model, optimizers, checkpoint)
    if checkpoint.get('scaler'):
        scaler.load_state_dict(checkpoint['scaler'])

# compile the model
raw_model = model # the plain GPT: checkpoints hold its weights, without torch.compile's '_orig_mod.' prefix
if compile:
    print("compiling the model... (takes a ~minute, in the first iteration)")
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
    """The mean loss of the same eval_iters batches of each split (from their own seed: evals then differ only by
    the model), and in bits per byte of text where the vocabulary says the bytes of its tokens; or None when a stop
    came first. The processes share the batches out and add up their losses, and the nats and bytes of text."""
    losses = {}
    eval_model.eval()
    for split in ['train', 'val']:
        loss_sum, nats_sum = torch.zeros((), device=device), torch.zeros((), device=device)
        bytes_sum = torch.zeros((), dtype=torch.long, device=device)
        for k, counted in parallel.share(eval_iters, ddp_rank, ddp_world_size):
            if stopping():
                eval_model.train()
                return None
            still_working(lambda: f"step {iter_num}: evaluating the {split} loss, batch {k + 1} of {eval_iters}")
            X, Y = checked(get_batch, data, split, batch_size, block_size, seed + 1, k, 0, device)
            with ctx:
                logits, loss = eval_model(X, Y)
            if counted: # not a batch that only keeps FSDP's processes in step
                loss_sum += loss.float()
                if token_bytes is not None:
                    nats, num_bytes = text_nats_and_bytes(logits, Y, loss, token_bytes)
                    nats_sum += nats
                    bytes_sum += num_bytes
        if ddp:
            for total in (loss_sum, nats_sum, bytes_sum):
                dist.all_reduce(total)
        losses[split] = loss_sum.item() / eval_iters
        losses[f'{split}_bpb'] = nats_sum.item() / math.log(2) / bytes_sum.item() if token_bytes is not None else None
    eval_model.train()
    return losses

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
provenance = run_record(config, device, dtype, ddp_world_size, run_id)

def save(reason, name, rngs=None):
    """Writes the whole training state to out_dir/name, CKPT or LAST (see checkpoint.py). Every process calls it:
    they hand in their RNG states (rngs: the states to save instead of the present ones, see the loop)."""
    rngs = parallel.gather(rngs or rng_state(device))
    parallel.check_weights_identical(raw_model) # DDP: the processes applied the same averaged gradients
    model_state, optimizer_states = parallel.full_state(raw_model, optimizers) # FSDP: gathered to rank 0's CPU
    if master_process:
        checkpoint = {'model': model_state, **dict(zip(CHECKPOINT_KEYS, optimizer_states)), 'model_args': model_args,
                      'iter_num': iter_num, 'best_val_loss': best_val_loss, 'config': dict(config), # nanoGPT's keys
                      'scaler': scaler.state_dict(), 'rng': rngs, 'provenance': provenance, 'vocab': vocab,
                      'tokens': tokens, 'best_iter': best_iter} # an exact resume's, and what the ids mean
        same = f", weights identical on all {ddp_world_size} processes" if ddp and not fsdp else ""
        say(f"saving checkpoint to {os.path.join(out_dir, name)} ({reason}, iter {iter_num}{same})")
        save_checkpoint(checkpoint, out_dir, name, kept()) # a ckpt.pt removes the older last.pt with it

def kept():
    return f"the checkpoint of iter {saved_iter} in {out_dir} is kept" if saved_iter is not None else \
        "no checkpoint was written"

def log(record): # to log.jsonl and wandb (runlog.py)
    runlog.record(record, kept())

saved_iter = iter_num if resumed else None # the iteration of the newest checkpoint in out_dir
if master_process:
    runlog.open(kept())
    log({'provenance': provenance, 'resumed_from': iter_num if resumed else None})
    if restart_count:
        log({'restart': restart_count, 'iter': iter_num})
    if tokens_per_iter != tokens_per_iter_then:
        log({'iter': iter_num, 'tokens_per_iter': tokens_per_iter, 'was': tokens_per_iter_then})

def diverged(name, value):
    # a NaN or inf loss: stop rather than train on garbage, and leave the last good checkpoint alone
    return UserError(f"{name} is {value} at iter {iter_num}: training diverged; lower --learning_rate ({kept()})")

stop.catch_signals() # from here on a stop saves the state of the last finished iteration

# training loop
X, Y = get_train_batch(iter_num, 0) # fetch the very first batch
local_iter_num = 0 # number of iterations in the lifetime of this process
# ckpt.pt holds the model to sample: the latest state, or with always_save_checkpoint=False the best on val, and
# then the latest state between evals goes to last.pt (checkpoint.py)
latest = CKPT if always_save_checkpoint else LAST
peak_flops = None # measured when first needed: on CPU this takes a moment
running_mfu = -1.0
run_start = time.time()
tokens_at_start = tokens
timing_start = None # (time, iter_num) from which the rate of the run is measured: after its first iteration
rngs_before = None # this process's RNG states at the start of the iteration at hand: what a stop within it saves
stopped = False # by a stop that every process heard (stopping())
while True:

    # determine and set the learning rate for this iteration
    lr = get_lr(iter_num) if decay_lr else learning_rate
    set_lr(optimizers, lr, learning_rate) # Muon's scaled alike

    # evaluate the loss on train/val sets and write checkpoints
    if iter_num % eval_interval == 0 or iter_num == max_iters:
        losses = estimate_loss()
        result = eval_hellaswag.evaluate_hellaswag(eval_model, hellaswag_examples, device, ctx, ddp_rank, ddp_world_size,
                                                   hellaswag_tokenizer, stopping=stopping) if losses and hellaswag else None
        if losses is None or (hellaswag and result is None):
            say(f"step {iter_num}: the evaluation is skipped, as the run stops (a resumed run evaluates here)")
            stopped = True
            break
        runlog.evaluation(iter_num, losses, result, tokens, kept())
        if not math.isfinite(losses['val']):
            raise diverged('val loss', losses['val'])
        improved = losses['val'] < best_val_loss
        if improved:
            best_val_loss, best_iter = losses['val'], iter_num
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
    # and using the GradScaler if data type is float16. A stop between micro steps drops the iteration: nothing
    # of it has reached the weights, and the RNG states of its start are what a checkpoint of this point holds.
    rngs_before = rng_state(device)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    for micro_step in range(gradient_accumulation_steps):
        if stopping():
            break
        still_working(lambda: f"iter {iter_num}: micro step {micro_step + 1} of {gradient_accumulation_steps}, "
                              f"{time.perf_counter() - t0:.0f}s into the iteration")
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
    else:
        rngs_before = None # the iteration is whole: its RNG states are those of now
    if rngs_before is not None:
        model.zero_grad(set_to_none=True) # the dropped micro steps' gradients
        stopped = True
        break
    # unscale (fp16), clip the gradient, step the optimizers and the scaler, flush the gradients
    optimizer_step(optimizers, scaler, model.parameters(), grad_clip)
    # the loss of the whole global batch: one sync per iteration
    if ddp:
        dist.all_reduce(loss_sum)
        loss_sum /= ddp_world_size
    lossf = loss_sum.item()

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
        say(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms"
            + (f", mfu {running_mfu*100:.2f}%" if running_mfu >= 0 else "") # once it means something
            + f", {progress(iter_num + 1, max_iters, timing_start)}")
        log({'iter': iter_num, 'loss': lossf, 'lr': lr, 'dt_ms': dt * 1000,
             'mfu': running_mfu if running_mfu >= 0 else None, 'tokens': tokens})
    for epoch in epochs_ended(data, block_size, data_order, rows_per_step, iter_num):
        if master_process: # data_order='epoch': this iteration read the last windows of an epoch
            say(f"iter {iter_num}: end of epoch {epoch} of the training data")
            log({'iter': iter_num, 'epoch': epoch, 'tokens': tokens})
    iter_num += 1
    local_iter_num += 1
    if local_iter_num == 1: # the rate of the run is measured from here: the first iteration (a compile, caches
        timing_start = (time.time(), iter_num) # filling) says little of the others

# the end: a stop saves the state of the last finished iteration; nanoGPT never saved the updates after the last
# eval, the end of training gets a checkpoint of its own
if stopped and ddp:
    stop.shared()
if not eval_only and iter_num != saved_iter:
    save(f"stopped by {stop.reason}" if stopped else 'end of training', latest, rngs_before)
    saved_iter = iter_num
if master_process:
    say(summary(out_dir, iter_num, stop.reason if stopped else None, eval_only, time.time() - run_start,
                tokens - tokens_at_start, tokens, best_val_loss, best_iter, ddp))
runlog.close()
ending = UserError(f"{stop.reason}; stopped at iter {iter_num} ({kept()}): fix it, then go on with python train.py "
                   f"--out_dir={shlex.quote(out_dir)} --init_from=resume") if stop.error else None
if ddp:
    parallel.end(ending)
if ending:
    raise ending
