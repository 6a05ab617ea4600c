"""
Prepare the Shakespeare dataset for character-level language modeling.
So instead of encoding with GPT-2 BPE tokens, we just map characters to ints.
Will save train.bin, val.bin containing the ids, and meta.pkl containing the
encoder and decoder and some other related info.

    python data/shakespeare_char/prepare.py                 # downloads input.txt if absent
    python data/shakespeare_char/prepare.py --input PATH    # or use a local copy
    python data/shakespeare_char/prepare.py --out_dir DIR   # write the outputs to DIR, not here
stdout holds what was written and a command that trains on it in minutes on this
machine; notes and progress go to stderr.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))  # the repo root (see corpus.py)
import errors  # noqa: E402
errors.install()
import corpus  # noqa: E402
import tokenizer  # noqa: E402

# the tiny shakespeare dataset: downloaded when absent
args = corpus.parse_args(__doc__, input=None, url=corpus.TINY_SHAKESPEARE_URL,
                         out_dir=os.path.dirname(os.path.abspath(__file__)))
out = errors.result_stream()  # what was written (corpus.report_dataset); notes and progress go to stderr
t0 = time.time()
data = corpus.tiny_shakespeare(args)
print(f"length of dataset in characters: {len(data):,}")

# get all the unique characters that occur in this text
chars = sorted(list(set(data)))
vocab_size = len(chars)
print("all the unique characters:", ''.join(chars))
print(f"vocab size: {vocab_size:,}")

# create a mapping from characters to integers
stoi = {ch: i for i, ch in enumerate(chars)}


def encode(string):
    return [stoi[c] for c in string]  # encoder: take a string, output a list of integers


# create the train and test splits
n = len(data)
train_data = data[:int(n*0.9)]
val_data = data[int(n*0.9):]

# encode both to integers
train_ids = encode(train_data)
val_ids = encode(val_data)

# export to bin files, and the meta information as well, to help us encode/decode later: all three move in together
with corpus.new_dataset(args.out_dir, ['train.bin', 'val.bin', 'meta.pkl']) as built:
    corpus.write_ids(built['train.bin'], np.array(train_ids, dtype=np.uint16))
    corpus.write_ids(built['val.bin'], np.array(val_ids, dtype=np.uint16))
    corpus.write_meta(built['meta.pkl'], tokenizer.char_vocab(chars))
corpus.report_dataset(out, args.out_dir, list(built), {'train': len(train_ids), 'val': len(val_ids)},
                      time.time() - t0, vocab_size)

# length of dataset in characters: 1,115,394
# all the unique characters:
#  !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
# vocab size: 65
# train has 1,003,854 tokens
# val has 111,540 tokens
