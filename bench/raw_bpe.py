"""
The raw speed of the two GPT-2 BPEs on texts already in memory, nothing written: the ceiling of a data script, for
bench/prepare_web.py. The texts are read from parquet files before the timer starts.

    python bench/raw_bpe.py --files 'DIR/*.parquet' --num_proc 2 --how tiktoken-threads

--how: tiktoken-threads     tiktoken's encode_ordinary_batch(num_threads=num_proc)
       tiktoken-processes   num_proc forked processes, each tokenizer.ExactBPE's reference_ids on its share
       gigatoken-threads    gigatoken's encode_batch(parallel=True): its own thread pool (RAYON_NUM_THREADS=num_proc)
       gigatoken-processes  num_proc forked processes, each ExactBPE's fast_ids on its share (data scripts' way)

Prints one JSON line: seconds, CPU seconds of all its processes, and the number of ids.
"""
import argparse
import glob
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))  # the repo root (see corpus.py)
import tokenizer  # noqa: E402

texts = []  # filled before the workers fork, which see it without a copy
gpt2 = tokenizer.ExactBPE(tokenizer.GPT2_VOCAB, fast=True)


def encode_share(how, k, num_proc):
    encode = gpt2.fast_ids if how == 'gigatoken-processes' else gpt2.reference_ids
    return sum(len(encode(text)) for text in texts[k::num_proc])


def cpu_seconds():  # of this process and of its children that have ended
    return sum(os.times()[:4])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--files', required=True)
    parser.add_argument('--num_proc', type=int, default=os.cpu_count())
    parser.add_argument('--how', required=True, choices=['tiktoken-threads', 'tiktoken-processes', 'gigatoken-threads',
                                                        'gigatoken-processes'])
    args = parser.parse_args()
    import pyarrow.parquet as pq
    texts += [t for f in sorted(glob.glob(args.files)) for t in pq.read_table(f, columns=['text']).column(0).to_pylist()]
    gpt2.reference_ids('warm up')  # the BPEs loaded before the timer, as the data scripts load theirs first
    if args.how.startswith('gigatoken'):
        gpt2.fast_ids('warm up')
    t0, c0 = time.time(), cpu_seconds()
    if args.how == 'tiktoken-threads':
        n = sum(map(len, tokenizer.gpt2_encoding().encode_ordinary_batch(texts, num_threads=args.num_proc)))
    elif args.how == 'gigatoken-threads':
        os.environ['RAYON_NUM_THREADS'] = str(args.num_proc)  # read when its pool starts, at the first parallel call
        import awkward as ak
        n = int(ak.sum(ak.num(gpt2.gigatoken.encode_batch(texts, parallel=True))))
    else:
        with multiprocessing.get_context('fork').Pool(args.num_proc) as pool:
            n = sum(pool.starmap(encode_share, [(args.how, k, args.num_proc) for k in range(args.num_proc)]))
    print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0, 'tokens': n}))
