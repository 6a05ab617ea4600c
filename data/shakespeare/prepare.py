"""
Prepare the Shakespeare dataset for GPT-2 BPE language modeling: encodes the
text with tiktoken's gpt2 encoding and saves train.bin and val.bin (uint16 ids).

    python data/shakespeare/prepare.py                 # downloads input.txt if absent
    python data/shakespeare/prepare.py --input PATH    # or use a local copy
    python data/shakespeare/prepare.py --out_dir DIR   # write the outputs to DIR, not here
"""
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(here)))  # the repo root, for fileio, whatever the cwd
import errors  # noqa: E402
errors.install()
from fileio import tiny_shakespeare, write_atomically  # noqa: E402
from tokenizer import gpt2_encoding  # noqa: E402

# the tiny shakespeare dataset: downloaded when absent
data, out_dir = tiny_shakespeare(__doc__, here)
enc = gpt2_encoding()  # before any output: offline without tiktoken's cache, one line says what to do
n = len(data)
train_data = data[:int(n*0.9)]
val_data = data[int(n*0.9):]

# encode with tiktoken gpt2 bpe
train_ids = enc.encode_ordinary(train_data)
val_ids = enc.encode_ordinary(val_data)
print(f"train has {len(train_ids):,} tokens")
print(f"val has {len(val_ids):,} tokens")

# export to bin files
train_ids = np.array(train_ids, dtype=np.uint16)
val_ids = np.array(val_ids, dtype=np.uint16)
write_atomically(os.path.join(out_dir, 'train.bin'), train_ids.tofile)
write_atomically(os.path.join(out_dir, 'val.bin'), val_ids.tofile)

# train.bin has 301,966 tokens
# val.bin has 36,059 tokens
