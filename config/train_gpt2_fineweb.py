# config for training GPT-2 (124M) on FineWeb-Edu 10B (data/fineweb/prepare.py), build-nanogpt's recipe in
# nanoGPT's knobs: one epoch of ~10B tokens, to ~0.30 HellaSwag acc_norm (GPT-2 124M: 0.2955)
# launch as the following (e.g. in a screen session) on 1 node of 8 GPUs:
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb.py

dataset = 'fineweb'
wandb_log = True
wandb_project = 'fineweb'
wandb_run_name = 'gpt2-124M'

# 16 batch size * 1024 block size * 4 gradaccum * 8 GPUs = 524,288 = 2**19 tokens per step, as build-nanogpt
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 4 * 8

# 19,073 steps * 524,288 tokens = 10B tokens: one epoch of sample-10BT, which reads each window of 1024 tokens
# of train.bin once, in a seeded order (nanoGPT's random offsets would leave ~37% of them unread and read ~26% twice
# or more); log.jsonl records the iter where the epoch ends
data_order = 'epoch'
max_iters = 19073
lr_decay_iters = 19073
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 715  # 375M tokens, as GPT-3's paper

# eval stuff: val loss and HellaSwag every 250 steps, as build-nanogpt
eval_interval = 250
eval_iters = 200
log_interval = 10
hellaswag = True

# weight decay
weight_decay = 1e-1
