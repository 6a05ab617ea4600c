"""
Prepare the Shakespeare dataset for GPT-2 BPE language modeling: encodes the
text with tiktoken's gpt2 encoding and saves train.bin and val.bin (uint16 ids).

    python data/shakespeare/prepare.py                 # downloads input.txt if absent
    python data/shakespeare/prepare.py --input PATH    # or use a local copy
    python data/shakespeare/prepare.py --out_dir DIR   # write the outputs to DIR, not here
"""
import argparse
import os
import sys

import numpy as np
import tiktoken

DATA_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(here)))  # the repo root, for fileio, whatever the cwd
from fileio import download, read_text, write_atomically  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--input', help="text file to use instead of input.txt in --out_dir")
parser.add_argument('--url', default=DATA_URL, help="where to download input.txt from when it is absent")
parser.add_argument('--out_dir', default=here, help="where the outputs (and a downloaded input.txt) go; "
                                                    "default: this script's folder, where train.py looks")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)

# download the tiny shakespeare dataset
input_file_path = args.input or os.path.join(args.out_dir, 'input.txt')
if args.input is None and not os.path.exists(input_file_path):
    download(args.url, input_file_path, f"put the file at {input_file_path} or pass --input PATH")

data = read_text(input_file_path)
n = len(data)
train_data = data[:int(n*0.9)]
val_data = data[int(n*0.9):]

# encode with tiktoken gpt2 bpe
enc = tiktoken.get_encoding("gpt2")
train_ids = enc.encode_ordinary(train_data)
val_ids = enc.encode_ordinary(val_data)
print(f"train has {len(train_ids):,} tokens")
print(f"val has {len(val_ids):,} tokens")

# export to bin files
train_ids = np.array(train_ids, dtype=np.uint16)
val_ids = np.array(val_ids, dtype=np.uint16)
write_atomically(os.path.join(args.out_dir, 'train.bin'), train_ids.tofile)
write_atomically(os.path.join(args.out_dir, 'val.bin'), val_ids.tofile)

# train.bin has 301,966 tokens
# val.bin has 36,059 tokens
