"""
Benchmark data/fineweb/prepare.py (corpus.prepare_parquet) on local parquet files against
  build-nanogpt: its fineweb.py loop (bench/build_nanogpt_fineweb.py), on a datasets.Dataset of the same files;
  raw limits:    the two BPEs on the texts already in memory, nothing written (bench/raw_bpe.py): tiktoken's
                 encode_ordinary_batch with num_proc threads; gigatoken with its own threads and in num_proc
                 processes (threads or processes: which is faster for the data scripts);
  ours trained:  data/fineweb/prepare.py with a BPE of --vocab_size tokens trained on the same documents (once,
                 before the rounds: --tokenizer bpe), given as --tokenizer meta.pkl: the encoding alone.
All with the same --num_proc, each in a fresh process. Ours is timed whole (python's start, imports, the BPE's
load and self-test, the guard, writing and fsyncing train.bin and val.bin); the others time only their loop, after
imports, loading the BPE and, for build-nanogpt, load_dataset's conversion of the files into its cache.
They run in turns, --rounds times, each round starting with the next one, so that a noisy host slows each alike;
ratios are per round, with their medians. Then the peak memory of each pipeline's whole process tree
(bench/memory.py), and what the guard costs.

    python bench/prepare_web.py [--mb 200] [--files 2] [--num_proc N] [--rounds 3] [--vocab_size 32768]
    python bench/prepare_web.py --programs ours 'ours trained' build-nanogpt    # some of them

The documents are the installed Python packages' own sources and documentation (*.py, *.pyi, *.rst, *.md, *.txt,
*.h), cut into pieces of 500 to 8000 characters as web documents are: real text, but more code than the web has.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, repo)  # for corpus, read for its guard's constants
import corpus  # noqa: E402
import tokenizer  # noqa: E402
from memory import peak_memory  # noqa: E402

EXTENSIONS = ('.py', '.pyi', '.rst', '.md', '.txt', '.h')


def write_documents(src_dir, megabytes, files, seed=1337):
    """megabytes of real text in documents of 500 to 8000 characters, as files parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    docs, size = [], 0
    for folder, _, names in sorted(os.walk(sysconfig.get_paths()['purelib'])):
        for name in sorted(n for n in names if n.endswith(EXTENSIONS)):
            with open(os.path.join(folder, name), 'rb') as f:
                text = f.read().decode('utf-8', errors='replace')
            while text and size < megabytes * 10**6:
                n = int(rng.integers(500, 8000))
                docs.append(text[:n])
                size += len(text[:n].encode())
                text = text[n:]
    per_file = -(-len(docs) // files)
    for k in range(files):
        pq.write_table(pa.table({'text': docs[k * per_file:(k + 1) * per_file]}),
                       os.path.join(src_dir, f'{k:03d}.parquet'), row_group_size=1000)
    return len(docs), size


def make_dataset(data_dir, megabytes, val_every=50):
    """data_dir/{train,val}.bin: megabytes of write_documents' text through data/fineweb/prepare.py, as a dataset for
    train.py (one document in val_every to val.bin). For the benchmarks that train on web-like text."""
    with tempfile.TemporaryDirectory() as source:
        write_documents(source, megabytes, 2)
        proc = subprocess.run([sys.executable, os.path.join(repo, 'data', 'fineweb', 'prepare.py'), '--data_files',
                               os.path.join(source, '*.parquet'), '--out_dir', data_dir, '--val_every', str(val_every)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: data/fineweb/prepare.py failed: {proc.stderr.strip().splitlines()[-1]}")


def ours(bpe, *more):
    return lambda files, num_proc, out: [sys.executable, os.path.join(repo, 'data', 'fineweb', 'prepare.py'),
                                         '--data_files', files, '--out_dir', out, '--num_proc', str(num_proc),
                                         '--bpe', bpe, *more]


def raw(how):
    return lambda files, num_proc, out: [sys.executable, os.path.join(here, 'raw_bpe.py'), '--files', files,
                                         '--num_proc', str(num_proc), '--how', how]


def build_nanogpt(files, num_proc, out):
    return [sys.executable, os.path.join(here, 'build_nanogpt_fineweb.py'), '--files', files, '--out_dir', out,
            '--num_proc', str(num_proc)]


PROGRAMS = {  # name: its command line for (parquet files, --num_proc, an empty folder of its own)
    'ours': ours('gigatoken'), 'ours tiktoken': ours('tiktoken'), 'build-nanogpt': build_nanogpt,
    'raw tiktoken threads': raw('tiktoken-threads'), 'raw gigatoken threads': raw('gigatoken-threads'),
    'raw gigatoken procs': raw('gigatoken-processes'), 'ours trained': None,  # once its BPE is trained
}


def run(name, files, num_proc, out):
    """Runs a program once; returns (seconds, CPU seconds of all its processes)."""
    os.makedirs(out, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(PROGRAMS[name](files, num_proc, out), capture_output=True, text=True, cwd=out)
    seconds = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    if name.startswith('ours'):  # timed whole, from here
        return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    timed = json.loads(proc.stdout.strip().splitlines()[-1])
    return timed['seconds'], timed['cpu']


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mb', type=int, default=200, help="megabytes of text (default: 200)")
    parser.add_argument('--files', type=int, default=2, help="parquet files (default: 2)")
    parser.add_argument('--num_proc', type=int, default=os.cpu_count())
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--vocab_size', type=int, default=32768, help="the trained BPE's (default: 32768)")
    parser.add_argument('--programs', nargs='+', default=list(PROGRAMS), choices=list(PROGRAMS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        os.makedirs(src)
        num_docs, size = write_documents(src, args.mb, args.files)
        files = os.path.join(src, '*.parquet')
        run('ours', files, args.num_proc, os.path.join(tmp, 'warm'))  # tokens counted once, caches warm
        tokens = sum(os.path.getsize(os.path.join(tmp, 'warm', f'{s}.bin')) for s in corpus.SPLITS) // 2
        print(f"{args.files} files, {num_docs:,} documents, {size / 1e6:,.0f} MB, {tokens:,} tokens, --num_proc "
              f"{args.num_proc}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        names = args.programs
        if 'ours trained' in names:  # the BPE trained on all the documents, once; then encoding with it is timed
            PROGRAMS['ours trained'] = ours('gigatoken', '--tokenizer', os.path.join(tmp, 'trained', 'meta.pkl'))
            PROGRAMS['ours training'] = ours('gigatoken', '--tokenizer', 'bpe', '--vocab_size', str(args.vocab_size),
                                     '--tokenizer_mb', str(args.mb))
            seconds, _ = run('ours training', files, args.num_proc, os.path.join(tmp, 'trained'))
            trained = sum(os.path.getsize(os.path.join(tmp, 'trained', f'{s}.bin')) for s in corpus.SPLITS) // 2
            print(f"the trained BPE of {args.vocab_size:,} tokens: {trained:,} tokens ({size / trained:.2f} bytes a "
                  f"token; GPT-2's: {size / tokens:.2f}); training and encoding took {seconds:.0f} s")
        print("MB/s       " + " ".join(f"{n:>14}" for n in names), flush=True)
        times, cpus = [], []
        for r in range(args.rounds):
            t, cpu = {}, {}
            for name in [names[(r + k) % len(names)] for k in range(len(names))]:  # each round starts with the next
                t[name], cpu[name] = run(name, files, args.num_proc, os.path.join(tmp, f'{r}', name.replace(' ', '_')))
            times.append(t)
            cpus.append(cpu)
            print(f"round {r:>2}   " + " ".join(f"{size / 1e6 / t[n]:>14,.2f}" for n in names) +
                  f"   load {os.getloadavg()[0]:.1f}", flush=True)

        def median(f):
            return statistics.median(f(t) for t in times)
        if {'ours', 'ours trained', 'build-nanogpt'} <= set(names):
            print(f"median: ours trained is {median(lambda t: t['build-nanogpt'] / t['ours trained']):.2f}x as fast as "
                  f"build-nanogpt (GPT-2's BPE) on the same text, ours (GPT-2's BPE) "
                  f"{median(lambda t: t['build-nanogpt'] / t['ours']):.2f}x; ours trained takes "
                  f"{median(lambda t: t['ours trained'] / t['ours']):.2f}x the time of ours")
        if set(names) == set(PROGRAMS) - {'ours training'}:  # the figures below need every program
            print(f"median: ours is {median(lambda t: t['build-nanogpt'] / t['ours']):.2f}x as fast as build-nanogpt, "
                  f"{median(lambda t: t['raw tiktoken threads'] / t['ours']):.2f}x as fast as raw tiktoken threads, "
                  f"{median(lambda t: t['ours tiktoken'] / t['ours']):.2f}x as fast as ours with --bpe tiktoken")
            print(f"median: ours makes {median(lambda t: tokens / t['ours'] / args.num_proc):,.0f} tokens/s per "
                  f"process ({median(lambda t: size / 1e6 / t['ours'] / args.num_proc):.1f} MB/s); gigatoken in "
                  f"processes is {median(lambda t: t['raw gigatoken threads'] / t['raw gigatoken procs']):.2f}x as "
                  f"fast as with its threads")
            print("CPU seconds, all processes, median: " +
                  ", ".join(f"{n} {statistics.median(c[n] for c in cpus):.1f}" for n in names))

            # the guard: tiktoken on the first tasks (once) and on 1 in GUARD_EVERY of the rest, from the CPU seconds
            # of each BPE alone, which a busy host disturbs less than wall time
            tiktoken_cpu_per_byte = statistics.median(c['raw tiktoken threads'] for c in cpus) / size
            gigatoken_cpu_per_byte = statistics.median(c['raw gigatoken procs'] for c in cpus) / size
            first = tokenizer.GUARD_FIRST_TASKS * corpus.TASK_BYTES
            print(f"the guard: {first * tiktoken_cpu_per_byte:.1f} CPU seconds once (the first {first // 2**20} MB), "
                  f"then {100 * tiktoken_cpu_per_byte / tokenizer.GUARD_EVERY / gigatoken_cpu_per_byte:.1f}% of "
                  f"gigatoken's CPU time (tiktoken takes {tiktoken_cpu_per_byte / gigatoken_cpu_per_byte:.1f}x "
                  f"gigatoken's per byte)")
            cpu = {n: statistics.median(c[n] for c in cpus) for n in names}
            print(f"per CPU second: ours {tokens / cpu['ours']:,.0f} tokens (all included), gigatoken alone "
                  f"{tokens / cpu['raw gigatoken procs']:,.0f}, tiktoken alone {tokens / cpu['raw tiktoken threads']:,.0f}")
        for name in [n for n in ('ours', 'ours tiktoken', 'build-nanogpt', 'ours trained') if n in names]:
            out = os.path.join(tmp, 'memory', name.replace(' ', '_'))
            os.makedirs(out)
            for num_proc in sorted({1, args.num_proc}):
                code, rss, pss = peak_memory(PROGRAMS[name](files, num_proc, out), cwd=out,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                assert code == 0, name
                print(f"peak memory of {name}, --num_proc {num_proc}, all its processes: {rss:,.0f} MB RSS, "
                      f"{pss:,.0f} MB PSS", flush=True)
