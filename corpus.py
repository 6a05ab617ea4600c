"""
Text to training data, for every data script: GPT-2 ids as uint16 (each document closed by <|endoftext|>, 50256)
or character ids, written as the train.bin, val.bin and meta.pkl that train.py reads.

- The BPE: tiktoken's GPT-2 encoding is the reference; gigatoken, where it is installed, gives the same ids 10-20x
  faster (--bpe auto|gigatoken|tiktoken). A document gigatoken cannot take goes through tiktoken, and a guard
  compares gigatoken's ids with tiktoken's as the run goes: every document of the first GUARD_FIRST_TASKS tasks of
  the first file, and a seeded 1 in GUARD_EVERY of the others. A mismatch stops the run in one line.
- Workers: texts are encoded in worker processes on all cores (map_in_order), handed back in order. A worker that
  dies (the out-of-memory killer, kill -9) ends the run in one line; Ctrl-C is the main process's alone.
- Writing: every output is built under a temp name and all move in together at the end (new_dataset, move_in), so
  a failed run leaves the earlier dataset whole; a full disk or a read-only folder ends in one line.
- The scripts' command line (parse_args), their input files (find_files) and the web datasets' job
  (prepare_parquet: data/fineweb, data/openwebtext), which goes on after a kill from its last finished file.

The data scripts (data/**.py, bench/*.py) begin with one line that puts the repo root on sys.path, for this module:
Python puts only a script's own folder there, and `python data/shakespeare_char/prepare.py` must keep working as
nanoGPT users type it, from any directory.
"""

import argparse
import base64
import ctypes
import functools
import glob
import itertools
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import numpy as np
from tqdm import tqdm

from errors import UserError, first_line, writing
from fileio import claim, download, read_text, remove_stale_temps, sync_directory, temp_path, write_atomically
from tokenizer import gpt2_encoding, long_whitespace_cuts

TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
tqdm.monitor_interval = 0  # no monitor thread in the bars: the workers fork from a process without other threads

EOT = 50256
SPLITS = ('train', 'val')
TASK_BYTES = 2**20  # text a worker encodes per task: ~250k tokens, a fraction of a second
BATCH_DOCUMENTS = 256  # documents a worker holds as Python strings at a time
MAX_CHAR_VOCAB = 2**16  # char ids 0..65535 fit in uint16
PR_SET_PDEATHSIG = 1  # Linux's prctl option: a signal for this process when its parent dies

# ----------------------------------------------------------------------------- the BPE: tiktoken and gigatoken

BPES = ('auto', 'gigatoken', 'tiktoken')
GIGATOKEN = 'gigatoken==0.10.0'  # the version whose differences from tiktoken are measured and handled here
GUARD_EVERY = 1000  # the guard compares 1 document in GUARD_EVERY with tiktoken ...
GUARD_FIRST_TASKS = 4  # ... and every document of the first file's first tasks (4 MB of text, ~1,000 web documents)
GUARD_SEED = 1337
FRESH_CACHE_CHARS = 2**28  # gigatoken's cache of words grows without bound: a new one after this much text
SELF_TEST = "It's 2024: <|endoftext|> is text here.\r\n\n  日本語, emoji 😀👍🏽, e\u0301, 1234567 \t end  "


class Mismatch(UserError):
    """gigatoken's ids for a document are not tiktoken's."""


def tiktoken_ids(text):
    """The reference: tiktoken's GPT-2 ids of text as encode_ordinary gives them ('<|endoftext|>' in it is text),
    as uint32, for any text tiktoken's own encode_ordinary takes and for the few it cannot."""
    cuts = long_whitespace_cuts(text)
    if cuts:  # encoded in pieces that tiktoken can take, which give the ids of the whole
        bounds = [0, *cuts, len(text)]
        return np.concatenate([tiktoken_ids(text[a:b]) for a, b in zip(bounds, bounds[1:])])
    try:
        return gpt2_encoding().encode_to_numpy(text, disallowed_special=())  # tiktoken caches the encoding
    except UnicodeEncodeError:  # lone surrogates: replaced by U+FFFD, as encode_ordinary does
        return tiktoken_ids(text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace'))


_fast = {'tokenizer': None, 'chars': 0}  # this process's gigatoken and how much text it has encoded


def fast_tokenizer():
    """gigatoken's GPT-2 BPE, built from tiktoken's ranks with no special token (so that '<|endoftext|>' in a text
    is text, as in encode_ordinary). Built anew after FRESH_CACHE_CHARS of text to drop its cache of words."""
    if _fast['tokenizer'] is None or _fast['chars'] > FRESH_CACHE_CHARS:
        import gigatoken
        ranks = gpt2_encoding()._mergeable_ranks
        with tempfile.NamedTemporaryFile(suffix='.tiktoken') as f:  # gigatoken reads ranks from a file only
            f.write(b''.join(base64.b64encode(token) + b' %d\n' % rank for token, rank in ranks.items()))
            f.flush()
            _fast['tokenizer'] = None  # the old cache goes before the new tokenizer grows its own
            _fast['tokenizer'] = gigatoken.Tokenizer.from_tiktoken(f.name, pretokenizer='gpt2', special_tokens={})
        _fast['chars'] = 0
    return _fast['tokenizer']


def gigatoken_ids(text):
    """gigatoken's ids of text (uint32), one text at a time: its batch calls return awkward arrays, and importing
    awkward starts a thread (jemalloc's), after which a fork could deadlock the worker processes."""
    ids = fast_tokenizer().encode(text)
    _fast['chars'] += len(text)
    return ids


def bpe_ids(texts, bpe):
    """The GPT-2 ids of each text with bpe ('gigatoken' or 'tiktoken'), as uint32 arrays."""
    if bpe == 'tiktoken':
        return [tiktoken_ids(text) for text in texts]
    arrays = []
    for text in texts:
        try:
            arrays.append(gigatoken_ids(text))
        except Exception:  # a text gigatoken cannot take (a lone surrogate, say) goes through tiktoken
            arrays.append(tiktoken_ids(text))
    return arrays


def choose_bpe(bpe):
    """The BPE that --bpe names, checked in this process before any worker starts: 'auto' is gigatoken where it is
    installed and gives tiktoken's ids, else tiktoken."""
    reference = tiktoken_ids(SELF_TEST)  # without the BPE files, fail here in one line
    if bpe == 'tiktoken':
        return bpe
    try:
        if np.array_equal(gigatoken_ids(SELF_TEST), reference):
            return 'gigatoken'
        problem = "it gives other ids than tiktoken on a test text"
    except ImportError as e:
        if bpe == 'auto':
            return 'tiktoken'  # not installed: quietly
        problem = f"it is not installed ({e})"
    except Exception as e:
        problem = f"it fails on a test text ({first_line(e)})"
    if bpe == 'gigatoken':
        raise UserError(f"--bpe gigatoken: {problem}; pip install {GIGATOKEN}, or use --bpe tiktoken")
    print(f"not using gigatoken: {problem}")
    return 'tiktoken'


def guarded(source, task, n):
    """Which of the n documents of a task (the task-th of file number source) the guard compares with tiktoken:
    all in the first file's first GUARD_FIRST_TASKS tasks, else a seeded 1 in GUARD_EVERY. It depends on the task
    alone, so the same documents are compared whatever --num_proc and however often the run was resumed."""
    if source == 0 and task < GUARD_FIRST_TASKS:
        return np.ones(n, dtype=bool)
    return np.random.default_rng((GUARD_SEED, source, task)).random(n) < 1 / GUARD_EVERY


def check_against_tiktoken(texts, arrays, checked, where):
    """Raises a Mismatch naming (where(k)) the first text k of those checked whose ids are not tiktoken's."""
    for k in np.flatnonzero(checked):
        got, want = arrays[k], tiktoken_ids(texts[k])
        if not np.array_equal(got, want):
            i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise Mismatch(f"gigatoken's ids differ from tiktoken's in {where(k)} (at token {i} of "
                           f"{len(want)}): gigatoken cannot be trusted on this data")


def encode_texts(texts, ends, bpe='tiktoken', source=0, task=0, label='', first_row=None):
    """The GPT-2 ids of texts, concatenated, with EOT after each text whose `ends` is true (uint16); and each text's
    number of tokens, EOT included (int64). gigatoken's ids are checked by the guard (see guarded) for the task-th
    task of file number source; a mismatch names the file (label) and the text's row in it (first_row + k)."""
    texts = [text or '' for text in texts]  # a parquet null is an empty document
    arrays = bpe_ids(texts, bpe)
    if bpe == 'gigatoken':
        check_against_tiktoken(texts, arrays, guarded(source, task, len(texts)),
                               lambda k: label if first_row is None else f"row {first_row + k} of {label}")
    ends = np.fromiter(ends, dtype=bool, count=len(texts))
    lengths = np.array([len(ids) for ids in arrays], dtype=np.int64)
    ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint32)
    ids = np.insert(ids, np.cumsum(lengths)[ends], EOT)  # before the next text's first id: after text k
    return ids.astype(np.uint16), lengths + ends


# ----------------------------------------------------------------------------- worker processes

def quiet_worker():
    """Each worker's start: Ctrl-C is for the main process, which ends the workers; SIGTERM ends a worker at once,
    and so does the main process's death (kill -9, the out-of-memory killer), after which a worker would wait for
    work for ever, holding the output folder's lock (see fileio.claim) that it inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == 'linux':
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != multiprocessing.parent_process().pid:  # it died before that
            os._exit(1)


@contextmanager
def worker_pool(num_proc):
    """num_proc worker processes. A multiprocessing.Pool would replace a dead worker and leave its task unfinished
    for ever, and could not end the others (its terminate() waits on a lock the dead one may hold); this pool fails
    every task left when one dies, and ends the rest. When the block ends, tasks not started are dropped."""
    # forked where the system allows it: a worker starts in no time with what this process loaded (the BPE, its
    # warm-up). Safe as long as this process has no other thread, which could hold a lock at the fork (see
    # gigatoken_ids): the pool forks all its workers at its first task, before its own thread starts
    context = multiprocessing.get_context('fork' if sys.platform == 'linux' else None)
    pool = ProcessPoolExecutor(num_proc, mp_context=context, initializer=quiet_worker)
    try:
        pool.submit(int).result()  # that first task: the workers are forked now, before the caller starts a thread
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)  # the workers end once their task at hand is done


def map_in_order(pool, function, tasks, num_proc, advice):
    """Yields (task, function(*task)) for each task (a tuple of arguments), in order, computed by pool's num_proc
    processes (see worker_pool). A worker that dies ends it in one line, with advice on how to go on."""
    # pool.map would read the whole input ahead into its queue; this keeps two tasks per worker in flight, so
    # memory stays bounded however slow the workers
    in_flight = deque()
    try:
        for task in tasks:
            in_flight.append((task, pool.submit(function, *task)))
            if len(in_flight) >= 2 * num_proc:
                task, future = in_flight.popleft()
                yield task, future.result()
        while in_flight:
            task, future = in_flight.popleft()
            yield task, future.result()
    except BrokenProcessPool:  # from a task's result or from the next submit
        raise UserError(f"a tokenizer worker process died (killed by the out-of-memory killer, or by kill -9?); "
                        f"{advice}") from None


# ----------------------------------------------------------------------------- writing a dataset

def move_in(out_dir, built, remove=()):
    """Gives the files built ({final name: path}, complete) their final names in out_dir, one after the other with
    nothing in between, and removes the dataset files named in remove (an earlier dataset's that would contradict
    the new one)."""
    for path in built.values():
        with open(path, 'rb+') as f:
            os.fsync(f.fileno())
    for name, path in built.items():
        os.replace(path, os.path.join(out_dir, name))
    for name in remove:
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    sync_directory(out_dir)


@contextmanager
def new_dataset(out_dir, names, remove=()):
    """Around the writing of a dataset's files: yields {name: temp path} for each of names, beside its final path in
    out_dir; when the block ends, all move in (move_in). A failure leaves out_dir as it was (a folder it made is
    removed), and a full disk or a read-only out_dir ends in one line. out_dir belongs to this process meanwhile."""
    made = not os.path.isdir(out_dir)
    built = {name: temp_path(os.path.join(out_dir, name)) for name in names}
    done = False
    with writing(out_dir, f"the dataset in {out_dir} is as it was"):
        try:
            os.makedirs(out_dir, exist_ok=True)
            claim(out_dir, "wait for the other run to end")
            for name in (*names, *remove):
                remove_stale_temps(os.path.join(out_dir, name))  # left by a killed run
            yield built
            move_in(out_dir, built, remove)
            done = True
        finally:
            for path in built.values():
                if os.path.exists(path):
                    os.remove(path)
            if made and not done and os.path.isdir(out_dir):
                if os.path.exists(os.path.join(out_dir, '.lock')):
                    os.remove(os.path.join(out_dir, '.lock'))
                if not os.listdir(out_dir):
                    os.rmdir(out_dir)


def write_ids(path, ids):
    with open(path, 'wb') as f:
        f.write(ids.data)  # not tofile: its short writes on a full disk carry no errno


def write_meta(path, chars):
    """meta.pkl of a character vocabulary (tokenizer.load_meta reads it): chars sorted, id i is chars[i]."""
    meta = {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {c: i for i, c in enumerate(chars)}}
    with open(path, 'wb') as f:
        pickle.dump(meta, f)


# ----------------------------------------------------------------------------- the command line, the input

OPTIONS = {  # every data script's options: (type, help); each script names its own with their defaults
    'input': (str, "the text: a file, a directory (its *.txt, recursively) or a quoted glob; for the shakespeare "
                   "prepares one file (default: input.txt in --out_dir, downloaded from --url when absent)"),
    'url': (str, "where to download input.txt from when absent"),
    'name': (str, "dataset name: writes DATA_DIR/NAME, trains with --dataset=NAME"),
    'tokenizer': (str, "char (one token per character, the vocabulary in meta.pkl) or gpt2 (default: {default})"),
    'val_fraction': (float, "the last part of the tokens kept for val (default: {default})"),
    'dataset': (str, "Hugging Face dataset repository (default: {default})"),
    'subset': (str, "the subset (default: {default})"),
    'data_files': (str, "local parquet files instead of the Hub: a file, a directory or a quoted glob such as "
                        "'mirror/**/*.parquet' (the offline way)"),
    'text_column': (str, "the parquet column holding the text (default: {default})"),
    'revision': (str, "the dataset's branch, tag or commit on the Hub (default: {default})"),
    'val_every': (int, "documents 0, N, 2N, ... go to val.bin (default: {default})"),
    'num_proc': (int, "tokenizer processes (default: all cores, {default})"),
    'bpe': (str, "GPT-2 BPE: gigatoken (fast, checked against tiktoken as it goes), tiktoken (the reference), or "
                 "auto: gigatoken where it is installed (default: {default})"),
    'out_dir': (str, "where the outputs go (default: {default})"),
    'data_dir': (str, "where the NAME folder goes (default: {default})"),
}
CHOICES = {'tokenizer': ('char', 'gpt2'), 'bpe': BPES}


def parse_args(description, **defaults):
    """The command line of a data script: the options of OPTIONS named in defaults, each with its default (...:
    required). Their rules are checked here, in one block, as UserErrors."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        kind, help = OPTIONS[name]
        parser.add_argument(f'--{name}', type=kind, required=default is ..., default=None if default is ... else default,
                            help=help.format(default=default))
    args = parser.parse_args()
    for name, choices in CHOICES.items():
        if name in defaults and getattr(args, name) not in choices:
            raise UserError(f"--{name} must be one of {', '.join(choices)}, got {getattr(args, name)}")
    for name in ('num_proc', 'val_every'):
        if name in defaults and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if 'val_fraction' in defaults and not 0 < args.val_fraction < 1:
        raise UserError(f"--val_fraction must be between 0 and 1, got {args.val_fraction}")
    if 'name' in defaults and (args.name in ('', '.', '..') or os.path.basename(args.name) != args.name):
        raise UserError(f"--name must be a plain folder name, got {args.name!r}")
    return args


def find_files(pattern, extension, option):
    """The files that a command line's option names by pattern: a file, a directory (its files ending in extension,
    recursively) or a glob; as absolute paths, sorted. None is a UserError."""
    if os.path.isfile(pattern):
        return [os.path.abspath(pattern)]
    in_directory = os.path.isdir(pattern)
    found = glob.glob(os.path.join(pattern, '**', f'*{extension}') if in_directory else pattern, recursive=True)
    files = sorted(os.path.abspath(p) for p in found if os.path.isfile(p))
    if not files and in_directory:
        raise UserError(f"no {extension} files in {pattern} (a directory stands for its *{extension}, recursively); "
                        f"for other files pass a quoted glob, e.g. {option} '{os.path.join(pattern, '**', '*.md')}'")
    if not files:
        raise UserError(f"no files match {option} {pattern}")
    return files


def tiny_shakespeare(args):
    """The text of data/shakespeare*/prepare.py: --input, or input.txt in --out_dir, downloaded from --url when
    absent."""
    input_path = args.input or os.path.join(args.out_dir, 'input.txt')
    if args.input is None and not os.path.exists(input_path):
        with writing(args.out_dir):
            os.makedirs(args.out_dir, exist_ok=True)
        download(args.url, input_path, f"put the file at {input_path} or pass --input PATH")
    return read_text(input_path)


# ----------------------------------------------------------------------------- the web datasets

def offline_advice(repo):
    return (f"to prepare it offline, copy {repo}'s parquet files from a machine that has them "
            f"and pass --data_files 'DIR/*.parquet'")


def hub_sources(repo, folder, revision):
    """(commit, parquet files under folder) of the Hub dataset repo at revision. A dataset whose branch holds
    no parquet (one still shipping a loading script) is read from the Hub's own parquet conversion."""
    from huggingface_hub import HfApi
    api = HfApi()
    for rev in [revision] + (['refs/convert/parquet'] if revision == 'main' else []):
        try:
            commit = api.dataset_info(repo, revision=rev).sha
            files = sorted(f.path for f in api.list_repo_tree(repo, folder, repo_type='dataset', revision=commit,
                                                              recursive=True) if f.path.endswith('.parquet'))
        except Exception as e:  # httpx's errors without a network, the Hub's HTTP errors (401, 404, ...)
            raise UserError(f"cannot list {repo} on the Hub ({first_line(e)}); {offline_advice(repo)}") from None
        if files:
            if rev != revision:
                print(f"{repo} has no parquet files at {revision}; using the Hub's conversion at {rev}")
            return commit, files
    raise UserError(f"{repo} has no parquet files under {folder or '/'} at {revision}; "
                    f"check --dataset and --revision, or pass --data_files")


def hub_download(repo, commit, path, download_dir):
    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(repo, path, repo_type='dataset', revision=commit, local_dir=download_dir)
    except Exception as e:  # as in hub_sources
        raise UserError(f"cannot download {path} of {repo} ({first_line(e)}); run the same command again to go on, "
                        f"or {offline_advice(repo)}") from None


def open_parquet(path, text_column):
    """path as a pyarrow ParquetFile, checked to hold text in text_column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        f = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot read {path} as parquet: {e}")
    schema = f.schema_arrow
    if text_column not in schema.names:
        raise UserError(f"{path} has no column '{text_column}' (it has {', '.join(schema.names)}); "
                        f"name the text column with --text_column")
    column_type = schema.field(text_column).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise UserError(f"column '{text_column}' of {path} holds {column_type}, not text; "
                        f"name the text column with --text_column")
    return f


def load_progress(path, job):
    """The recorded state of an unfinished run of job in this folder, or None."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        state = json.load(f)
    if state['job'] != job:
        raise UserError(f"{path} records an unfinished run with other options ({state['job']}); run that command "
                        f"again to finish it, or delete {path} to start over")
    return state


def save_progress(path, state):
    write_atomically(path, lambda f: f.write(json.dumps(state, indent=1).encode()))


def prepare_parquet(args, hub_folder=None):
    """Tokenizes the dataset that args name (see the web datasets' prepare.py) into args.out_dir's train.bin and
    val.bin. Until the end they are train.bin.partial and val.bin.partial, and prepare_progress.json records the
    state after each finished source file, which a run killed at any moment goes on from."""
    out_dir = args.out_dir
    bpe = choose_bpe(args.bpe)
    go_on = "run the same command again: it goes on from the last finished source file"
    t0 = time.time()
    with writing(out_dir, f"free some space and {go_on}"):
        os.makedirs(out_dir, exist_ok=True)
        claim(out_dir, "wait for the other run to end")
        state, tokens = tokenize_parquet(args, hub_folder, bpe, go_on)
        move_in(out_dir, {f'{split}.bin': os.path.join(out_dir, f'{split}.bin.partial') for split in SPLITS})
        os.remove(os.path.join(out_dir, 'prepare_progress.json'))
        shutil.rmtree(os.path.join(out_dir, 'downloads'), ignore_errors=True)
    dt = time.time() - t0
    print(f"{state['documents']:,} documents ({state['val_documents']:,} in val) from {len(state['sources'])} "
          f"source files")
    print(f"train has {state['tokens']['train']:,} tokens")
    print(f"val has {state['tokens']['val']:,} tokens")
    print(f"wrote train.bin and val.bin to {out_dir} in {dt:.0f}s ({tokens / dt:,.0f} tokens/s)")


def start_or_resume(args, hub_folder, partial, progress_path):
    """The state of the job args name: a fresh one, or that after the last source file a killed run finished, with
    the partial outputs cut back to it."""
    job = {'dataset': None if args.data_files else args.dataset, 'hub_folder': None if args.data_files else hub_folder,
           'revision': None if args.data_files else args.revision, 'data_files': args.data_files,
           'text_column': args.text_column, 'val_every': args.val_every}
    state = load_progress(progress_path, job)
    if state is None:
        if args.data_files:
            commit, sources = None, find_files(args.data_files, '.parquet', '--data_files')
        else:
            commit, sources = hub_sources(args.dataset, hub_folder, args.revision)
        state = {'job': job, 'commit': commit, 'sources': sources, 'done': 0, 'documents': 0,
                 'val_documents': 0, 'tokens': {split: 0 for split in SPLITS}}
        for split in SPLITS:
            open(partial[split], 'wb').close()
        save_progress(progress_path, state)
        return state
    print(f"going on from {progress_path}: {state['done']} of {len(state['sources'])} source files done")
    for split in SPLITS:  # drop what a killed run wrote after its last recorded file
        size = 2 * state['tokens'][split]
        if not os.path.exists(partial[split]) or os.path.getsize(partial[split]) < size:
            raise UserError(f"{partial[split]} is missing or shorter than {progress_path} records; "
                            f"delete {progress_path} to start over")
        os.truncate(partial[split], size)
    return state


def tokenize_parquet(args, hub_folder, bpe, go_on):
    """prepare_parquet's work: every source file left, tokenized into the partial outputs. Returns the final state
    and the number of tokens this run wrote. go_on: how to go on after a worker died."""
    out_dir = args.out_dir
    partial = {split: os.path.join(out_dir, f'{split}.bin.partial') for split in SPLITS}
    progress_path = os.path.join(out_dir, 'prepare_progress.json')
    download_dir = os.path.join(out_dir, 'downloads')
    state = start_or_resume(args, hub_folder, partial, progress_path)
    sources = state['sources']

    def fetch(i):
        return sources[i] if args.data_files else hub_download(args.dataset, state['commit'], sources[i], download_dir)

    def tasks():
        """The arguments of encode_rows for each row range of the files left, in order."""
        next_file = downloader.submit(fetch, state['done']) if state['done'] < len(sources) else None
        for i in range(state['done'], len(sources)):
            path = next_file.result()
            if i + 1 < len(sources):
                next_file = downloader.submit(fetch, i + 1)  # the next file downloads while this one is tokenized
            f = open_parquet(path, args.text_column)
            files[path] = (i, f.metadata.num_rows)
            for task, (start, end) in enumerate(row_ranges(f, args.text_column)):
                yield path, args.text_column, start, end, bpe, i, task

    t0 = time.time()
    tokens_at_start = sum(state['tokens'].values())
    files = {}  # path -> (its index in sources, its number of rows), for the files under way
    print(f"tokenizing with {bpe}" + (" (checked against tiktoken as it goes)" if bpe == 'gigatoken' else ""))
    try:
        with worker_pool(args.num_proc) as pool, ThreadPoolExecutor(1) as downloader, \
                tqdm(total=len(sources), initial=state['done'], unit='file', dynamic_ncols=True, disable=None,
                     bar_format='{l_bar}{bar}| {n:.2f}/{total} files [{elapsed}<{remaining}{postfix}]') as bar, \
                open(partial['train'], 'ab') as train, open(partial['val'], 'ab') as val:  # closed before errors show
            outputs = {'train': train, 'val': val}
            # the workers read the parquet files themselves and hand back ids alone; this process only writes
            for (path, _, start, end, *_), (ids, lengths) in map_in_order(pool, encode_rows, tasks(), args.num_proc,
                                                                          go_on):
                # document n goes to val when n % val_every == 0: the documents alone decide, not the run
                is_val = (state['documents'] + np.arange(len(lengths))) % args.val_every == 0
                token_is_val = np.repeat(is_val, lengths)
                for split, mask in (('train', ~token_is_val), ('val', token_is_val)):
                    split_ids = ids[mask]
                    outputs[split].write(split_ids.data)
                    state['tokens'][split] += len(split_ids)
                state['documents'] += len(lengths)
                state['val_documents'] += int(is_val.sum())
                i, num_rows = files[path]
                bar.update((end - start) / max(num_rows, 1))
                tokens_per_s = (sum(state['tokens'].values()) - tokens_at_start) / (time.time() - t0)
                bar.set_postfix_str(f"{state['documents']:,} docs, {tokens_per_s:,.0f} tok/s", refresh=False)
                if end == num_rows:  # the file's last rows: on disk before the progress file says so
                    for out in outputs.values():
                        out.flush()
                        os.fsync(out.fileno())
                    state['done'] = i + 1
                    save_progress(progress_path, state)
                    bar.update(i + 1 - bar.n)
                    del files[path]
                    if not args.data_files:
                        os.remove(path)  # the output plus a source file or two on disk, never the whole dataset
    except Mismatch as e:
        for path in (*partial.values(), progress_path):  # written by a BPE that is wrong somewhere: start over
            os.remove(path)
        raise Mismatch(f"{e}; its output so far is deleted: run the same command with --bpe tiktoken") from None
    return state, sum(state['tokens'].values()) - tokens_at_start


def row_ranges(f, text_column):
    """[start, end) row ranges that cover parquet file f in order, each about TASK_BYTES of text or less, from
    its metadata alone: small row groups are joined, large ones cut. An empty file has one empty range."""
    leaf = [f.schema.column(j).path for j in range(len(f.schema))].index(text_column)
    ranges, start, end, size, group_start = [], 0, 0, 0, 0
    for g in range(f.metadata.num_row_groups):
        group = f.metadata.row_group(g)
        pieces = max(1, -(-group.column(leaf).total_uncompressed_size // TASK_BYTES))
        piece_size = group.column(leaf).total_uncompressed_size / pieces
        for k in range(1, pieces + 1):
            if size and size + piece_size > TASK_BYTES:
                ranges.append((start, end))
                start, size = end, 0
            end = group_start + group.num_rows * k // pieces
            size += piece_size
        group_start += group.num_rows
    return ranges + [(start, group_start)] if start < group_start or not ranges else ranges


@functools.lru_cache(maxsize=1)
def parquet_file(path):
    """path, opened in a worker once for all the ranges it encodes there (a web parquet's footer is megabytes)."""
    import pyarrow.parquet as pq
    # read as it goes, a megabyte at a time: not a whole row group at once, which can be hundreds of megabytes
    return pq.ParquetFile(path, buffer_size=2**20, pre_buffer=False)


def encode_rows(path, text_column, start, end, bpe, source, task):
    """encode_texts of the text of rows [start, end) of a parquet file (the task-th range of file number source),
    each closed by EOT. It runs in a worker, which reads the rows itself: only the ids travel between processes."""
    f = parquet_file(path)
    group_starts = np.cumsum([0] + [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)]).tolist()
    groups = [g for g in range(f.num_row_groups) if group_starts[g] < end and group_starts[g + 1] > start]
    texts = []
    row = group_starts[groups[0]] if groups else start
    for batch in (f.iter_batches(BATCH_DOCUMENTS, row_groups=groups, columns=[text_column], use_threads=False)
                  if groups else []):
        first, last = max(start - row, 0), min(end - row, batch.num_rows)  # the batch's rows in the range
        texts += batch.column(0)[first:last].to_pylist()
        row += batch.num_rows
        if row >= end:
            break
    return encode_texts(texts, itertools.repeat(True), bpe, source, task, path, start)
