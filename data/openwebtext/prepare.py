"""
Saves the openwebtext dataset (Skylion007/openwebtext) to train.bin and val.bin: GPT-2 BPE ids as uint16,
each document followed by <|endoftext|> (50256), for config/train_gpt2.py.

    python data/openwebtext/prepare.py                               # from the Hub, ~17 GB here
    python data/openwebtext/prepare.py --data_files 'mirror/*.parquet'   # a local copy, offline

It reads the parquet files the Hub hosts for the dataset, one at a time (no dataset script, no datasets
cache), tokenizes each on all cores and deletes it. Every 2000th document (0.05%, as nanoGPT) goes to val.bin.
Kill it at any moment and run the same command again: it goes on from the last finished file. See readme.md.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(here)))  # the repo root, for corpus, whatever the cwd
import errors  # noqa: E402
errors.install()
from corpus import prepare_parquet, web_dataset_args  # noqa: E402

args = web_dataset_args(__doc__, 'Skylion007/openwebtext', val_every=2000, out_dir=here)
prepare_parquet(args)

# 8,013,769 documents; train.bin is ~17GB, val.bin ~8.5MB
# train has ~9B tokens (9,035,582,198)
# val has ~4M tokens (4,434,897)
