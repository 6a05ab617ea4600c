"""
build-nanogpt's fineweb.py tokenizing loop, reproduced for bench/prepare_web.py to time on local parquet files:
datasets.load_dataset of the files, then a multiprocessing.Pool's imap (chunksize 16) of a per-document function
(<|endoftext|> first, tiktoken's encode_ordinary, a numpy array checked to fit uint16) into a buffer of 100M-token
shards saved with np.save. It is written here from a reading of that script (github.com/karpathy/build-nanogpt),
not copied; one difference: the number of processes is a flag (build-nanogpt takes half the cores).

    python bench/build_nanogpt_fineweb.py --files 'DIR/*.parquet' --out_dir DIR --num_proc 2

Prints one JSON line: the seconds and CPU seconds (of all its processes) of the loop, after load_dataset.
"""
import argparse
import glob
import json
import multiprocessing
import os
import time

import numpy as np
import tiktoken

SHARD_SIZE = 10**8  # tokens per shard

enc = tiktoken.get_encoding('gpt2')  # at import: the forked workers inherit it
eot = enc.eot_token


def tokenize(doc):
    """One document's ids, <|endoftext|> first, as uint16."""
    ids = np.array([eot] + enc.encode_ordinary(doc['text']))
    assert (0 <= ids).all() and (ids < 2**16).all(), "token dictionary too large for uint16"
    return ids.astype(np.uint16)


def tokenize_to_shards(dataset, out_dir, num_proc):
    """Every document of dataset, tokenized by num_proc processes in order, into SHARD_SIZE-token .npy shards in
    out_dir (the first one val, the others train)."""
    shard, filled = 0, 0
    buffer = np.empty(SHARD_SIZE, dtype=np.uint16)

    def save(ids):
        np.save(os.path.join(out_dir, f"edufineweb_{'val' if shard == 0 else 'train'}_{shard:06d}"), ids)

    with multiprocessing.get_context('fork').Pool(num_proc) as pool:
        for ids in pool.imap(tokenize, dataset, chunksize=16):
            if filled + len(ids) < SHARD_SIZE:
                buffer[filled:filled + len(ids)] = ids
                filled += len(ids)
            else:  # what fits ends this shard; the rest of the document begins the next one
                room = SHARD_SIZE - filled
                buffer[filled:] = ids[:room]
                save(buffer)
                shard += 1
                buffer[:len(ids) - room] = ids[room:]
                filled = len(ids) - room
        if filled:
            save(buffer[:filled])


def cpu_seconds():  # of this process and of its children that have ended
    return sum(os.times()[:4])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--files', required=True)
    parser.add_argument('--out_dir', required=True)
    parser.add_argument('--num_proc', type=int, default=max(1, os.cpu_count() // 2))
    args = parser.parse_args()
    from datasets import load_dataset
    dataset = load_dataset('parquet', data_files=sorted(glob.glob(args.files)), split='train',
                           cache_dir=os.path.join(args.out_dir, 'cache'))
    t0, c0 = time.time(), cpu_seconds()
    tokenize_to_shards(dataset, args.out_dir, args.num_proc)
    print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0}))
