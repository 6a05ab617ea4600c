"""
FineWeb-Edu (HuggingFaceFW/fineweb-edu) as train.bin and val.bin: GPT-2 BPE ids as uint16, each document
followed by <|endoftext|> (50256), as in openwebtext. The default subset, sample-10BT, is the 10B tokens that
build-nanogpt and llm.c train GPT-2 (124M) on (config/train_gpt2_fineweb.py).

    python data/fineweb/prepare.py                               # sample-10BT from the Hub, ~20 GB here
    python data/fineweb/prepare.py --subset sample-100BT         # or sample-350BT
    python data/fineweb/prepare.py --dataset HuggingFaceFW/fineweb   # plain FineWeb
    python data/fineweb/prepare.py --data_files 'mirror/*.parquet'   # a local copy, offline
    python data/fineweb/prepare.py --tokenizer bpe --vocab_size 32768  # a BPE trained on its first 1000 MB

The parquet files are fetched one at a time (the next one downloads while this one is tokenized on all cores)
and deleted once tokenized. Every 1000th document (0.1%, ~10M tokens of sample-10BT) goes to val.bin. Kill it at
any moment and run the same command again: it goes on from the last finished file, and the result is byte for
byte that of an uninterrupted run; train.bin and val.bin appear only when complete. See docs/data.md.
stdout holds what was written and a command that trains on it in minutes on this
machine; notes and progress go to stderr.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))  # the repo root (see corpus.py)
import errors  # noqa: E402
errors.install()
import corpus  # noqa: E402
from errors import UserError  # noqa: E402

SUBSETS = ('sample-10BT', 'sample-100BT', 'sample-350BT')  # folders sample/10BT, ... of both FineWeb datasets

if __name__ == '__main__':  # a worker process started by spawn (not Linux's fork) imports this file too
    args = corpus.parse_args(__doc__, dataset='HuggingFaceFW/fineweb-edu', subset=SUBSETS[0], data_files=None,
                             text_column='text', revision='main', val_every=1000, tokenizer='gpt2',
                             vocab_size=32768, tokenizer_mb=1000, num_proc=os.cpu_count() or 1, bpe='auto',
                             out_dir=os.path.dirname(os.path.abspath(__file__)))
    out = errors.result_stream()  # what was written (corpus.report_dataset); notes and progress go to stderr
    if args.subset not in SUBSETS:
        raise UserError(f"unknown --subset {args.subset}; choose one of {', '.join(SUBSETS)}")
    corpus.prepare_parquet(args, out, hub_folder='sample/' + args.subset.removeprefix('sample-'))

# sample-10BT: ~9.7M documents, ~10B tokens; train.bin ~20 GB
