"""
Saves the openwebtext dataset (Skylion007/openwebtext) to train.bin and val.bin: GPT-2 BPE ids as uint16,
each document followed by <|endoftext|> (50256), for config/train_gpt2.py.

    python data/openwebtext/prepare.py                               # from the Hub, ~17 GB here
    python data/openwebtext/prepare.py --data_files 'mirror/*.parquet'   # a local copy, offline
    python data/openwebtext/prepare.py --tokenizer bpe --vocab_size 32768  # a BPE trained on its first 1000 MB

It reads the parquet files the Hub hosts for the dataset, one at a time (no dataset script, no datasets
cache), tokenizes each on all cores and deletes it. Every 2000th document (0.05%, as nanoGPT) goes to val.bin.
Kill it at any moment and run the same command again: it goes on from the last finished file. See readme.md.
stdout holds what was written and a command that trains on it in minutes on this
machine; notes and progress go to stderr.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))  # the repo root (see corpus.py)
import errors  # noqa: E402
errors.install()
import corpus  # noqa: E402

if __name__ == '__main__':  # a worker process started by spawn (not Linux's fork) imports this file too
    args = corpus.parse_args(__doc__, dataset='Skylion007/openwebtext', data_files=None, text_column='text',
                             revision='main', val_every=2000, tokenizer='gpt2', vocab_size=32768, tokenizer_mb=1000,
                             num_proc=os.cpu_count() or 1, bpe='auto',
                             out_dir=os.path.dirname(os.path.abspath(__file__)))
    out = errors.result_stream()  # what was written (corpus.report_dataset); notes and progress go to stderr
    corpus.prepare_parquet(args, out)

# 8,013,769 documents; train.bin is ~17GB, val.bin ~8.5MB
# train has ~9B tokens (9,035,582,198)
# val has ~4M tokens (4,434,897)
