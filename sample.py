"""
Sample from a trained model: a checkpoint of train.py (or of nanoGPT) in out_dir, or GPT-2's weights.
$ python sample.py --out_dir=out-shakespeare-char
$ python sample.py --init_from=gpt2-xl --start="What is the answer to life, the universe, and everything?"
The samples are drawn together, as one batch (at most max_batch_size at once). One sample is printed token by
token as it is generated; several are printed whole when their batch ends, with the progress on the terminal meanwhile.
stdout holds the samples alone, each followed by a line of dashes (`> samples.txt`, `| head` give only them);
notes (settings, the model, the tokenizer) and progress go to stderr.
"""

import errors
errors.install() # first: a Ctrl-C during the slow imports below ends in one line too

import codecs
import os
import sys

import torch

import hardware
from checkpoint import load_model
from configurator import at_least, between, configure, optional
from errors import UserError, first_line

# -----------------------------------------------------------------------------
init_from: str = 'resume' # 'resume' (from an out_dir), a gpt2 variant (e.g. 'gpt2-xl') or a directory saved by transformers
out_dir: str = 'out' # ignored if init_from is not 'resume'
start: str = "\n" # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples: at_least(1) = 10 # number of samples to draw
max_batch_size: at_least(1) = 32 # samples drawn at once; more run as several batches. Lower it if memory runs short
max_new_tokens: at_least(1) = 500 # number of tokens generated in each sample
temperature: at_least(0.0) = 0.8 # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, 0 = always the most likely token
top_k: optional(at_least(1)) = 200 # retain only the top_k most likely tokens, clamp others to have 0 probability; None keeps every token
top_p: optional(between(0.0, 1.0, low_open=True)) = None # or e.g. 0.9: retain the fewest most likely tokens whose probabilities add up to top_p
seed: at_least(0) = 1337 # the samples follow from it: the same seed, the same samples
device: str = hardware.default_device() # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1', 'mps'
dtype: hardware.DTYPES = None # 'float32', 'bfloat16' or 'float16'; None: the device's best (hardware.default_dtype)
compile: bool = False # use PyTorch 2.0 to compile the model to be faster
configure(globals(), sys.argv[1:], explain=hardware.explain)
# -----------------------------------------------------------------------------
out = errors.result_stream() # the samples; everything else goes to stderr

# the user's mistakes, caught before the minutes a model can take to load
dtype, ctx = hardware.setup(device, dtype)
if start.startswith('FILE:'):
    prompt_path = start[5:]
    if os.path.exists(prompt_path) and not os.path.isfile(prompt_path): # a device or a FIFO would be read for ever
        raise UserError(f"the prompt file {prompt_path} is not a file; --start=FILE:PATH names a text file")
    try:
        with open(prompt_path, 'r', encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        raise UserError(f"cannot read the prompt file {prompt_path}: {e.strerror}")
    except UnicodeDecodeError:
        raise UserError(f"the prompt file {prompt_path} is not UTF-8 text")

torch.manual_seed(seed)

# model, and the tokenizer it was trained with (see tokenizer.model_tokenizer)
model, tokenizer = load_model(init_from, out_dir)[:2] # not kept: the checkpoint maps its file, 0.5 GB for GPT-2
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

# run generation: the samples of a batch share each read of the weights, which is most of what a token costs
def stream(tokens):
    """Prints one sample token by token as it comes."""
    print(start, end='', file=out)
    utf8 = codecs.getincrementaldecoder('utf-8')(errors='replace') # holds back a character's first bytes
    for token in tokens:
        print(utf8.decode(tokenizer.token_bytes(token.item())), end='', flush=True, file=out)
    print(utf8.decode(b'', final=True), file=out)
    print('---------------', file=out, flush=True)

def print_whole(tokens, which):
    """Prints the samples of a batch, each whole, when it ends; meanwhile, on a terminal, how far it has come."""
    new_tokens = []
    for token in tokens:
        new_tokens.append(token)
        show_progress(f"{which}: {len(new_tokens)}/{max_new_tokens} tokens")
    show_progress("")
    for row in torch.cat(new_tokens, dim=1).tolist():
        # the bytes of its tokens joined, as stream() prints them: a BPE token may hold part of a character
        print(start + b''.join(tokenizer.token_bytes(t) for t in row).decode('utf-8', errors='replace'), file=out)
        print('---------------', file=out, flush=True)

def show_progress(line):
    """line over the previous one on a terminal; nothing when stderr is a file or a pipe, whose reader wants none."""
    if sys.stderr.isatty():
        print(f"\r{line}\033[K", end='', file=sys.stderr, flush=True)

batches = -(-num_samples // max_batch_size)
sizes = [num_samples // batches + (b < num_samples % batches) for b in range(batches)] # even: 11 by 10 is 6 + 5
done = 0
with ctx:
    for rows in sizes:
        # ids past the tokenizer's (GPT-2's 50257 padded to 50304) mean nothing to it: never sample them
        tokens = model.generate_tokens(x, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                       num_samples=rows, vocab_limit=tokenizer.vocab_size)
        try:
            if rows == 1:
                stream(tokens)
            else:
                print_whole(tokens, f"samples {done + 1}-{done + rows} of {num_samples}")
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e): # CPU allocator's
                raise
            raise UserError(f"out of memory drawing {rows} samples at once; lower --max_batch_size ({first_line(e)})")
        done += rows
