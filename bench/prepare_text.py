"""
Benchmark data/prepare_text.py on synthetic text of two sizes, each many read chunks long: prints tokens/s and the
peak memory of each run's whole process tree (bench/memory.py), for char and for gpt2 with each BPE, to show that
memory does not grow with the input.

    python bench/prepare_text.py [--sizes_mb 50 200]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from memory import peak_memory

here = os.path.dirname(os.path.abspath(__file__))


def write_synthetic_text(path, size_mb, seed=1337):
    """Random words from a 5,000-word vocabulary in lines and paragraphs, size_mb megabytes of it."""
    rng = np.random.default_rng(seed)
    letters = np.array(list('abcdefghijklmnopqrstuvwxyz'))
    vocab = [''.join(rng.choice(letters, size=n)) for n in rng.integers(1, 10, size=5000)]
    # one 1 MB block of fresh random text, written again and again
    words = [vocab[i] for i in rng.integers(0, len(vocab), size=200_000)]
    lines = [' '.join(words[i:i + 12]).capitalize() + '.' for i in range(0, len(words), 12)]
    block = '\n'.join(l + ('\n' if i % 8 == 7 else '') for i, l in enumerate(lines)).encode('utf-8')
    block = block[:2**20].rsplit(b' ', 1)[0] + b'\n'
    with open(path, 'wb') as f:
        for _ in range(size_mb):
            f.write(block)


def run(input_path, tokenizer, bpe, data_dir):
    """Run prepare_text once; return (tokens, seconds, peak RSS and PSS in MB)."""
    name = f'{tokenizer}-{bpe}'
    cmd = [sys.executable, os.path.join(here, '..', 'data', 'prepare_text.py'), '--input', input_path,
           '--name', name, '--tokenizer', tokenizer, '--bpe', bpe, '--data_dir', data_dir]
    t0 = time.time()
    code, rss, pss = peak_memory(cmd, stdout=subprocess.DEVNULL)
    dt = time.time() - t0
    assert code == 0, f"{' '.join(cmd)} failed"
    out_dir = os.path.join(data_dir, name)
    n = sum(os.path.getsize(os.path.join(out_dir, f)) for f in ('train.bin', 'val.bin')) // 2
    return n, dt, rss, pss


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes_mb', type=int, nargs='+', default=[50, 200], help="input sizes in MB")
    args = parser.parse_args()

    print(f"{'input':>8} {'tokenizer':>15} {'tokens':>13} {'seconds':>8} {'tokens/s':>11} {'peak RSS':>9} {'PSS':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for size_mb in args.sizes_mb:
            input_path = os.path.join(tmp, f'{size_mb}mb.txt')
            write_synthetic_text(input_path, size_mb)
            for tokenizer, bpe in (('char', 'auto'), ('gpt2', 'tiktoken'), ('gpt2', 'gigatoken')):
                n, dt, rss, pss = run(input_path, tokenizer, bpe, tmp)
                label = tokenizer if tokenizer == 'char' else f'gpt2 {bpe}'
                print(f"{size_mb:>6}MB {label:>15} {n:>13,} {dt:>8.1f} {n / dt:>11,.0f} {rss:>7.0f}MB {pss:>5.0f}MB",
                      flush=True)
            os.remove(input_path)
