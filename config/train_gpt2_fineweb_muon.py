# config for training GPT-2 (124M) on FineWeb-Edu 10B (data/fineweb/prepare.py) with Muon for the Blocks' weight
# matrices and AdamW, as in config/train_gpt2_fineweb.py, for the rest: the same model, a GPT-2 that transformers
# reads, in about 0.65x the steps (docs/muon.md). On 1 node of 8 GPUs:
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb_muon.py

dataset = 'fineweb'
wandb_log = True
wandb_project = 'fineweb'
wandb_run_name = 'gpt2-124M-muon'

# 2**19 tokens per step, as build-nanogpt and modded-nanogpt's records (8 GPUs x 64 x 1024 tokens there)
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 4 * 8
data_order = 'epoch'

optimizer = 'muon'
# modded-nanogpt reached FineWeb val loss 3.28 in 6,200 steps with Muon (records/track_1_short/2024-10-10_Muon)
# where AdamW took 9,536 (records/track_1_short/2024-06-06_AdamW), both of 2**19 tokens: 0.65x the steps, applied
# here to the AdamW recipe's 19,073 (one epoch of sample-10BT): 12,400 steps, 6.5B tokens
max_iters = 12400
lr_decay_iters = 12400
warmup_iters = 715  # the AdamW recipe's (375M tokens, as GPT-3's paper): it warms AdamW's embeddings up too
# Muon: lr 0.02 with the lr scaled by sqrt(max(1, rows/columns)) (muon_lr_adjust='original'): Keller Jordan's Muon
# and torch.optim.Muon's documented example, nanochat's matrix_lr; modded-nanogpt's 2024-10-10 record used 0.01 to
# 0.02 per matrix (3.6e-4 x sqrt(max(rows, columns))). Nesterov momentum 0.95 and no weight decay, as that record
muon_lr = 0.02
muon_momentum = 0.95
muon_weight_decay = 0.0
muon_lr_adjust = 'original'
# AdamW for the embeddings, LayerNorms and biases, as config/train_gpt2_fineweb.py
learning_rate = 6e-4
min_lr = 6e-5
weight_decay = 1e-1

# eval stuff: val loss and HellaSwag every 250 steps, as build-nanogpt
eval_interval = 250
eval_iters = 200
log_interval = 10
hellaswag = True
