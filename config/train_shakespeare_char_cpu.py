# the quick start: a small character-level GPT on tiny Shakespeare, on a CPU in a few minutes (nanoGPT's README
# recipe for a MacBook, as one file); val loss 1.8911 at iter 2000 on every run
# $ python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char_cpu.py

out_dir = 'out-shakespeare-char'
eval_interval = 250
eval_iters = 20 # a rough estimate, but quick
log_interval = 1
always_save_checkpoint = False # only save when val improves

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64 # context of up to 64 previous characters

# a baby GPT
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False
