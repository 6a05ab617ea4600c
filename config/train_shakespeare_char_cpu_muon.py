# the quick start with Muon: config/train_shakespeare_char_cpu.py's model and data, Muon (its defaults) for the
# Blocks' weight matrices and AdamW as there for the rest, and a schedule of 700 iterations instead of 2,000. It
# passes that recipe's final val loss (1.8911) near iteration 600 and ends below it (docs/muon.md)
# $ python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char_cpu_muon.py

out_dir = 'out-shakespeare-char-muon'
eval_interval = 100
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

optimizer = 'muon' # muon_lr 0.02, momentum 0.95, no weight decay: train.py's defaults
learning_rate = 1e-3 # AdamW's, for the embeddings, LayerNorms and biases; Muon's lr is scaled alike
max_iters = 700 # Muon with the 2,000 iterations' schedule passes 1.8911 at iteration 700; with this one at 600
lr_decay_iters = 700
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False
