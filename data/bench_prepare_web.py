"""
Benchmark data/fineweb/prepare.py's tokenizing (corpus.prepare_parquet) on local parquet files against
  build-nanogpt: its fineweb.py loop, multiprocessing.Pool.imap over a per-document encode_ordinary
                 (chunksize 16) into 100M-token shards, on a datasets.Dataset of the same files;
  raw limits:    tiktoken's encode_ordinary_batch on the texts already in memory, nothing written: one thread
                 per process we use (as the issue names it), and one forked process each (the true ceiling here,
                 as tiktoken's threads hold the GIL for part of their work).
Each runs in a fresh process with the same --num_proc; the timer starts after imports, after the GPT-2 BPE is
loaded and, for build-nanogpt, after load_dataset has converted the files into its cache (its script spends that
time too; we do not count it).
The four run in turns, --rounds times, each round starting with the next one, so that a noisy host slows each
alike; ratios are per round. Last, one more run of ours samples the memory of all its processes.

    python data/bench_prepare_web.py [--files 4] [--docs_per_file 2000] [--num_proc N] [--rounds 3]

The documents are cut from tiny Shakespeare (../shared or data/shakespeare_char/input.txt), 500 to 8000
characters long, as web documents are; the Hub cannot be reached here.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)

CPU_SECONDS = """
import os
def cpu_seconds():  # of this process and of its children that have ended
    return sum(os.times()[:4])
"""

OURS = CPU_SECONDS + """
import argparse, json, sys, time
sys.path.insert(0, REPO)
from corpus import prepare_parquet
from tokenizer import gpt2_encoding
args = argparse.Namespace(data_files=FILES, text_column='text', val_every=1000, num_proc=NUM_PROC, out_dir=OUT,
                          dataset=None, revision=None)
gpt2_encoding()  # loaded before the timer, as the others load theirs
t0, c0 = time.time(), cpu_seconds()
prepare_parquet(args)
print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0}))
"""

BUILD_NANOGPT = CPU_SECONDS + """
import json, multiprocessing as mp, os, time
import numpy as np, tiktoken
from datasets import load_dataset
fw = load_dataset('parquet', data_files=sorted(__import__('glob').glob(FILES)), split='train', cache_dir=OUT + '/cache')
enc = tiktoken.get_encoding('gpt2')
eot = enc._special_tokens['<|endoftext|>']
def tokenize(doc):  # as build-nanogpt's fineweb.py
    tokens = [eot]
    tokens.extend(enc.encode_ordinary(doc['text']))
    tokens_np = np.array(tokens)
    assert (0 <= tokens_np).all() and (tokens_np < 2**16).all(), 'token dictionary too large for uint16'
    return tokens_np.astype(np.uint16)
shard_size = int(1e8)
t0, c0 = time.time(), cpu_seconds()
with mp.Pool(NUM_PROC) as pool:
    all_tokens_np = np.empty((shard_size,), dtype=np.uint16)
    token_count = 0
    for tokens in pool.imap(tokenize, fw, chunksize=16):
        all_tokens_np[token_count:token_count + len(tokens)] = tokens  # the shards are larger than this bench
        token_count += len(tokens)
    np.save(OUT + '/shard_000000', all_tokens_np[:token_count])
print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0}))
"""

RAW_THREADS = CPU_SECONDS + """
import glob, json, time
import pyarrow.parquet as pq, tiktoken
texts = [t for f in sorted(glob.glob(FILES)) for t in pq.read_table(f, columns=['text']).column(0).to_pylist()]
enc = tiktoken.get_encoding('gpt2')
t0, c0 = time.time(), cpu_seconds()
enc.encode_ordinary_batch(texts, num_threads=NUM_PROC)
print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0}))
"""


RAW_PROCESSES = CPU_SECONDS + """
import glob, json, time
from multiprocessing import Pool
import pyarrow.parquet as pq, tiktoken
texts = [t for f in sorted(glob.glob(FILES)) for t in pq.read_table(f, columns=['text']).column(0).to_pylist()]
enc = tiktoken.get_encoding('gpt2')
def encode_share(k):  # forked workers see texts without copying them
    return sum(map(len, enc.encode_ordinary_batch(texts[k::NUM_PROC], num_threads=1)))
t0, c0 = time.time(), cpu_seconds()
with Pool(NUM_PROC) as pool:
    pool.map(encode_share, range(NUM_PROC))
print(json.dumps({'seconds': time.time() - t0, 'cpu': cpu_seconds() - c0}))
"""


def write_documents(src_dir, files, docs_per_file, seed=1337):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    shared = os.path.join(os.path.dirname(repo), 'shared', 'data', 'tinyshakespeare', 'input.txt')
    path = shared if os.path.exists(shared) else os.path.join(here, 'shakespeare_char', 'input.txt')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    rng = np.random.default_rng(seed)
    for k in range(files):
        starts = rng.integers(0, len(text) - 8000, size=docs_per_file)
        lengths = rng.integers(500, 8000, size=docs_per_file)
        docs = [text[s:s + n] for s, n in zip(starts, lengths)]
        pq.write_table(pa.table({'text': docs}), os.path.join(src_dir, f'{k:03d}_00000.parquet'), row_group_size=1000)


def script(code, files, num_proc, out):
    os.makedirs(out, exist_ok=True)
    code = code.replace('REPO', repr(repo)).replace('FILES', repr(files)).replace('NUM_PROC', str(num_proc)) \
               .replace('OUT', repr(out))
    return [sys.executable, '-c', code]


def run(code, files, num_proc, out):
    """Runs code in a fresh python; returns the seconds it timed, and the CPU seconds all its processes spent then."""
    proc = subprocess.run(script(code, files, num_proc, out), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    timed = json.loads(proc.stdout.strip().splitlines()[-1])
    return timed['seconds'], timed['cpu']


def tree_memory(pid):
    """(RSS, PSS) in MB summed over process pid and its descendants. RSS counts the pages that forked workers
    share with their parent once in each; PSS splits them among the processes that share them."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as f:
                children.setdefault(int(f.read().rsplit(')', 1)[1].split()[1]), []).append(int(entry))
        except OSError:  # ended meanwhile
            pass
    tree, total = [pid], {'Rss:': 0, 'Pss:': 0}
    for p in tree:
        tree += children.get(p, [])
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                for line in f:
                    if line.split()[0] in total:
                        total[line.split()[0]] += int(line.split()[1])  # kB
        except OSError:
            pass
    return total['Rss:'] / 1024, total['Pss:'] / 1024


def peak_memory(code, files, num_proc, out):
    """Runs code in a fresh python, sampling its process tree's memory every 20 ms; returns the peaks (MB)."""
    proc = subprocess.Popen(script(code, files, num_proc, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = (0, 0)
    while proc.poll() is None:
        peaks = tuple(map(max, peaks, tree_memory(proc.pid)))
        time.sleep(0.02)
    assert proc.returncode == 0, proc.stderr.read()
    return peaks


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--files', type=int, default=4)
    parser.add_argument('--docs_per_file', type=int, default=2000)
    parser.add_argument('--num_proc', type=int, default=os.cpu_count())
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        os.makedirs(src)
        write_documents(src, args.files, args.docs_per_file)
        files = os.path.join(src, '*.parquet')
        run(OURS, files, args.num_proc, os.path.join(tmp, 'warm'))  # tokens counted once, caches warm
        with open(os.path.join(tmp, 'warm', 'train.bin'), 'rb') as f:
            n = (f.seek(0, 2) + os.path.getsize(os.path.join(tmp, 'warm', 'val.bin'))) // 2
        print(f"{args.files} files, {args.files * args.docs_per_file:,} documents, {n:,} tokens, "
              f"--num_proc {args.num_proc}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        print(f"tokens/s {'ours':>10} {'build-nanogpt':>14} {'raw threads':>12} {'raw procs':>10} | "
              f"{'ours/build':>10} {'ours/raw threads':>16} {'ours/raw procs':>14}")
        ratios, cpus = [], []
        for r in range(args.rounds):
            codes = (OURS, BUILD_NANOGPT, RAW_THREADS, RAW_PROCESSES)
            t, cpu = [0] * len(codes), [0] * len(codes)
            for i in [(r + k) % len(codes) for k in range(len(codes))]:  # each round starts with the next one
                t[i], cpu[i] = run(codes[i], files, args.num_proc, os.path.join(tmp, f'{r}.{i}'))
            cpus.append(cpu)
            ratios.append((t[1] / t[0], t[0] / t[2], t[0] / t[3]))  # speed-up over build; time over each limit
            print(f"round {r:>2} " + " ".join(f"{n / s:>{w},.0f}" for s, w in zip(t, (8, 14, 12, 10))) + " | " +
                  " ".join(f"{x:>{w - 1}.2f}x" for x, w in zip(ratios[-1], (10, 16, 14))) +
                  f"   load {os.getloadavg()[0]:.1f}", flush=True)
        build, threads, procs = (statistics.median(col) for col in zip(*ratios))
        print(f"median: ours is {build:.2f}x as fast as build-nanogpt; it takes {threads:.2f}x the time of "
              f"the raw limit with threads, {procs:.2f}x with processes")
        # CPU time is less sensitive to other jobs than wall time: what each costs where every core is busy
        cpu = [statistics.median(col) for col in zip(*cpus)]
        print(f"CPU seconds, all processes, median: ours {cpu[0]:.1f}, build-nanogpt {cpu[1]:.1f}, "
              f"raw threads {cpu[2]:.1f}, raw procs {cpu[3]:.1f}")
        rss, pss = peak_memory(OURS, files, args.num_proc, os.path.join(tmp, 'memory'))
        print(f"peak memory of ours, all its processes together: {rss:,.0f} MB RSS, {pss:,.0f} MB PSS")
