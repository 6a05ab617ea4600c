"""
Benchmark data/prepare_text.py on synthetic text of two sizes, each many read chunks
long: prints tokens/s and peak memory per run, to show memory does not grow with input.

    python data/bench_prepare_text.py [--sizes_mb 50 200]

Peak RSS is ru_maxrss of the finished run (os.wait4): the largest of the prepare_text
process and its worker processes, the per-run form of getrusage(RUSAGE_CHILDREN).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

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


def run(input_path, tokenizer, data_dir):
    """Run prepare_text once; return (tokens, seconds, peak RSS in MB)."""
    cmd = [sys.executable, os.path.join(here, 'prepare_text.py'), '--input', input_path,
           '--name', tokenizer, '--tokenizer', tokenizer, '--data_dir', data_dir]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen the process is already reaped
    dt = time.time() - t0
    assert proc.returncode == 0, f"{' '.join(cmd)} failed"
    out_dir = os.path.join(data_dir, tokenizer)
    n = sum(os.path.getsize(os.path.join(out_dir, f)) for f in ('train.bin', 'val.bin')) // 2
    return n, dt, usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes_mb', type=int, nargs='+', default=[50, 200], help="input sizes in MB")
    args = parser.parse_args()

    print(f"{'input':>8} {'tokenizer':>9} {'tokens':>13} {'seconds':>8} {'tokens/s':>11} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size_mb in args.sizes_mb:
            input_path = os.path.join(tmp, f'{size_mb}mb.txt')
            write_synthetic_text(input_path, size_mb)
            for tokenizer in ('char', 'gpt2'):
                n, dt, rss_mb = run(input_path, tokenizer, tmp)
                print(f"{size_mb:>6}MB {tokenizer:>9} {n:>13,} {dt:>8.1f} {n / dt:>11,.0f} {rss_mb:>7.0f}MB", flush=True)
            os.remove(input_path)
