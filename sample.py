"""
Sample from a trained model: a checkpoint of train.py (or of nanoGPT) in out_dir, or GPT-2's weights.
$ python sample.py --out_dir=out-shakespeare-char
$ python sample.py --init_from=gpt2-xl --start="What is the answer to life, the universe, and everything?"
Each sample is printed token by token as it is generated.
"""

import codecs
import os
import sys

import torch

import hardware
from checkpoint import load_checkpoint, model_from_checkpoint, model_path
from configurator import UserError, configure
from model import GPT
from tokenizer import model_tokenizer

# -----------------------------------------------------------------------------
init_from = 'resume' # 'resume' (from an out_dir), a gpt2 variant (e.g. 'gpt2-xl') or a directory saved by transformers
out_dir = 'out' # ignored if init_from is not 'resume'
start = "\n" # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples = 10 # number of samples to draw
max_new_tokens = 500 # number of tokens generated in each sample
temperature = 0.8 # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = always the most likely token
top_k = 200 # retain only the top_k most likely tokens, clamp others to have 0 probability; None keeps every token
top_p = None # or e.g. 0.9: retain the fewest most likely tokens whose probabilities add up to top_p
seed = 1337
device = hardware.default_device() # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1', 'mps'
dtype = None # 'float32', 'bfloat16' or 'float16'; None: the device's best (hardware.default_dtype)
compile = False # use PyTorch 2.0 to compile the model to be faster
configure(globals(), sys.argv[1:], unchecked=['top_k']) # an int, or None (checked below)
# -----------------------------------------------------------------------------

# the user's mistakes, caught before the minutes a model can take to load
hardware.check_device(device)
dtype = dtype or hardware.default_dtype(device) # after configure, so that --device=cpu gets float32
hardware.check_dtype(device, dtype)
if temperature < 0:
    raise UserError(f"temperature={temperature} must be >= 0 (0 always picks the most likely token)")
if num_samples < 1:
    raise UserError(f"num_samples={num_samples} must be at least 1")
if max_new_tokens < 1:
    raise UserError(f"max_new_tokens={max_new_tokens} must be at least 1")
if top_k is not None and not (type(top_k) is int and top_k >= 1):
    raise UserError(f"top_k={top_k!r} must be a whole number of at least 1, or None to keep every token")
if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
    raise UserError(f"top_p={top_p!r} must be in (0, 1], or None to keep every token")
if start.startswith('FILE:'):
    try:
        with open(start[5:], 'r', encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        raise UserError(f"cannot read the prompt file {start[5:]}: {e.strerror}")
    except UnicodeDecodeError:
        raise UserError(f"the prompt file {start[5:]} is not UTF-8 text")

torch.manual_seed(seed)
torch.backends.cuda.matmul.allow_tf32 = True # allow tf32 on matmul
torch.backends.cudnn.allow_tf32 = True # allow tf32 on cudnn
ctx = hardware.autocast(device, dtype)

# model, and the tokenizer it was trained with (see tokenizer.model_tokenizer)
if init_from == 'resume':
    # init from a model saved in a specific directory
    ckpt_path = model_path(out_dir)
    checkpoint = load_checkpoint(ckpt_path)
    tokenizer = model_tokenizer(checkpoint['model_args']['vocab_size'], checkpoint=checkpoint)
    model = model_from_checkpoint(checkpoint, ckpt_path)
else:
    # init from GPT-2's weights: the hub's, or a local copy saved by transformers (or export.py)
    try:
        model = GPT.from_pretrained(init_from, dict(dropout=0.0))
    except (ValueError, OSError) as e:
        raise UserError(f"init_from={init_from!r}: {str(e).strip().splitlines()[0]}")
    tokenizer = model_tokenizer(model.config.vocab_size, directory=init_from if os.path.isdir(init_from) else None)

model.eval()
model.to(device)
if compile:
    # in place: torch.compile(model) would return a wrapper whose generate() still calls the uncompiled forward
    model.compile()

# encode the beginning of the prompt
start_ids = tokenizer.encode(start)
if not start_ids:
    raise UserError("the prompt is empty; start with at least one token, e.g. --start='\\n'")
if len(start_ids) > model.config.block_size:
    print(f"the prompt has {len(start_ids)} tokens; the model sees the last {model.config.block_size} (its block_size)")
x = (torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...])

# run generation, printing each token as it comes
with ctx:
    for k in range(num_samples):
        print(start, end='')
        # ids past the tokenizer's (GPT-2's 50257 padded to 50304) mean nothing to it: never sample them
        tokens = model.generate_tokens(x, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                       vocab_limit=tokenizer.vocab_size)
        utf8 = codecs.getincrementaldecoder('utf-8')(errors='replace') # holds back a character's first bytes
        for token in tokens:
            print(utf8.decode(tokenizer.token_bytes(token.item())), end='', flush=True)
        print(utf8.decode(b'', final=True))
        print('---------------')
