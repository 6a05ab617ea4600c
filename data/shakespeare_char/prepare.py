"""
Prepare the Shakespeare dataset for character-level language modeling.
So instead of encoding with GPT-2 BPE tokens, we just map characters to ints.
Will save train.bin, val.bin containing the ids, and meta.pkl containing the
encoder and decoder and some other related info.

    python data/shakespeare_char/prepare.py                 # downloads input.txt if absent
    python data/shakespeare_char/prepare.py --input PATH    # or use a local copy
    python data/shakespeare_char/prepare.py --out_dir DIR   # write the outputs to DIR, not here
"""
import os
import pickle
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(here)))  # the repo root, for fileio, whatever the cwd
import errors  # noqa: E402
errors.install()
from fileio import tiny_shakespeare, write_atomically  # noqa: E402

# the tiny shakespeare dataset: downloaded when absent
data, out_dir = tiny_shakespeare(__doc__, here)
print(f"length of dataset in characters: {len(data):,}")

# get all the unique characters that occur in this text
chars = sorted(list(set(data)))
vocab_size = len(chars)
print("all the unique characters:", ''.join(chars))
print(f"vocab size: {vocab_size:,}")

# create a mapping from characters to integers
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for i, ch in enumerate(chars)}


def encode(string):
    return [stoi[c] for c in string]  # encoder: take a string, output a list of integers


# create the train and test splits
n = len(data)
train_data = data[:int(n*0.9)]
val_data = data[int(n*0.9):]

# encode both to integers
train_ids = encode(train_data)
val_ids = encode(val_data)
print(f"train has {len(train_ids):,} tokens")
print(f"val has {len(val_ids):,} tokens")

# export to bin files
train_ids = np.array(train_ids, dtype=np.uint16)
val_ids = np.array(val_ids, dtype=np.uint16)
write_atomically(os.path.join(out_dir, 'train.bin'), train_ids.tofile)
write_atomically(os.path.join(out_dir, 'val.bin'), val_ids.tofile)

# save the meta information as well, to help us encode/decode later
meta = {
    'vocab_size': vocab_size,
    'itos': itos,
    'stoi': stoi,
}
write_atomically(os.path.join(out_dir, 'meta.pkl'), lambda f: pickle.dump(meta, f))

# length of dataset in characters: 1,115,394
# all the unique characters:
#  !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
# vocab size: 65
# train has 1,003,854 tokens
# val has 111,540 tokens
