"""
Prepare the Shakespeare dataset for character-level language modeling.
So instead of encoding with GPT-2 BPE tokens, we just map characters to ints.
Will save train.bin, val.bin containing the ids, and meta.pkl containing the
encoder and decoder and some other related info.

    python data/shakespeare_char/prepare.py                 # downloads input.txt if absent
    python data/shakespeare_char/prepare.py --input PATH    # or use a local copy
"""
import argparse
import os
import pickle
import sys
import urllib.request

import numpy as np

DATA_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
here = os.path.dirname(os.path.abspath(__file__))  # outputs go next to this script, whatever the cwd


def download(url, path):
    # fetch to a temporary name first, so an interrupted download never looks like a finished input.txt
    tmp = path + '.tmp'
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, 'wb') as f:
            f.write(response.read())
    except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
        if os.path.exists(tmp):
            os.remove(tmp)
        sys.exit(f"error: could not download {url}: {getattr(e, 'reason', e)}; "
                 f"put the file at {path} or pass --input PATH")
    os.replace(tmp, path)


def read_text(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8')
    except OSError as e:
        sys.exit(f"error: could not read {path}: {e.strerror}")
    except UnicodeDecodeError as e:
        sys.exit(f"error: {path} is not valid UTF-8 (byte offset {e.start})")


def save(path, write):
    # write under a temporary name and rename, so an interrupted run never leaves a half-written file
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        write(f)
    os.replace(tmp, path)


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--input', help="text file to use instead of input.txt next to this script")
parser.add_argument('--url', default=DATA_URL, help="where to download input.txt from when it is absent")
args = parser.parse_args()

# download the tiny shakespeare dataset
input_file_path = args.input or os.path.join(here, 'input.txt')
if args.input is None and not os.path.exists(input_file_path):
    download(args.url, input_file_path)

data = read_text(input_file_path)
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
save(os.path.join(here, 'train.bin'), train_ids.tofile)
save(os.path.join(here, 'val.bin'), val_ids.tofile)

# save the meta information as well, to help us encode/decode later
meta = {
    'vocab_size': vocab_size,
    'itos': itos,
    'stoi': stoi,
}
save(os.path.join(here, 'meta.pkl'), lambda f: pickle.dump(meta, f))

# length of dataset in characters: 1,115,394
# all the unique characters:
#  !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
# vocab size: 65
# train has 1,003,854 tokens
# val has 111,540 tokens
