"""
Text to training data, for every data script: BPE ids as uint16 (GPT-2's, each document closed by <|endoftext|>,
50256, or those of a BPE trained on the text) or character ids, written as the train.bin, val.bin and meta.pkl that
train.py reads. The tokenizers themselves, and how a vocabulary is stored, are tokenizer.py's.

- Workers: texts are encoded in worker processes on all cores (map_in_order) with the run's tokenizer.ExactBPE
  (gigatoken checked against tiktoken, or tiktoken), handed back in order. A worker that dies (the out-of-memory
  killer, kill -9) ends the run in one line; Ctrl-C is the main process's alone.
- Writing: every output is built under a temp name and all move in together at the end (new_dataset, move_in), so
  a failed run leaves the earlier dataset whole; a full disk or a read-only folder ends in one line.
- The scripts' command line (parse_args), their input files (find_files) and the web datasets' job
  (prepare_parquet: data/fineweb, data/openwebtext), which goes on after a kill from its last finished file.

The data scripts (data/**.py, bench/*.py) begin with one line that puts the repo root on sys.path, for this module:
Python puts only a script's own folder there, and `python data/shakespeare_char/prepare.py` must keep working as
nanoGPT users type it, from any directory.
"""

import argparse
import ctypes
import functools
import glob
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from tqdm import tqdm

import tokenizer
from errors import UserError, first_line, writing
from fileio import (check_directory_path, claim, commit, download, read_record, read_text, remove_stale_temps, temp_path,
                    write_atomically)

TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
tqdm.monitor_interval = 0  # no monitor thread in the bars: the workers fork from a process without other threads

SPLITS = ('train', 'val')
TASK_BYTES = 2**20  # text a worker encodes per task: ~250k tokens, a fraction of a second
BATCH_DOCUMENTS = 256  # documents a worker holds as Python strings at a time
MAX_CHAR_VOCAB = 2**16  # char ids 0..65535 fit in uint16
PR_SET_PDEATHSIG = 1  # Linux's prctl option: a signal for this process when its parent dies

# ----------------------------------------------------------------------------- worker processes

_bpe = None  # a worker's tokenizer.ExactBPE, which worker_pool gives it


def quiet_worker(bpe=None):
    """Each worker's start: Ctrl-C is for the main process, which ends the workers; SIGTERM ends a worker at once,
    and so does the main process's death (kill -9, the out-of-memory killer), after which a worker would wait for
    work for ever, holding the output folder's lock (see fileio.claim) that it inherited. bpe: the ExactBPE that
    the worker's tasks encode with."""
    global _bpe
    _bpe = bpe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == 'linux':
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != multiprocessing.parent_process().pid:  # it died before that
            os._exit(1)


@contextmanager
def worker_pool(num_proc, bpe=None):
    """num_proc worker processes, each with a connection of its own (a socket pair), for map_in_order, whose
    tasks encode with bpe (see encode_texts). A worker that
    dies (kill -9, the out-of-memory killer) closes its own connection, even in the middle of a result: the main
    process meets the end of that connection, never half a message it would wait on for ever, as it can on the
    one pipe that concurrent.futures' and multiprocessing's pools share between all their workers (seen here once in
    twenty kills: a worker killed while it sent a result). When the block ends, the workers are ended."""
    # forked where the system allows it: a worker starts in no time with what this process loaded (the BPE, its
    # warm-up). Safe as long as this process has no other thread, which could hold a lock at the fork (see
    # tokenizer.ExactBPE.fast_ids): all workers are forked here, before the caller starts one
    context = multiprocessing.get_context('fork' if sys.platform == 'linux' else None)
    workers = []
    try:
        for _ in range(num_proc):
            ours, theirs = context.Pipe()
            process = context.Process(target=serve, args=(theirs, bpe), daemon=True)
            held = start_holding_ctrl_c(process)
            workers.append((process, ours))
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C now finds the worker in workers
            theirs.close()  # the worker's end is the worker's alone: its death ends the connection
        yield workers
    finally:
        for process, connection in workers:
            connection.close()  # no more work: a worker ends at its next task
            process.kill()  # or at once, with what it had at hand (the tasks not started are dropped)
        for process, _ in workers:
            process.join()


def start_holding_ctrl_c(process):
    """process.start(), with Ctrl-C held back from this process until the caller gives back the signal mask this
    returns: a KeyboardInterrupt between the fork and the caller's record of the process (seen once in CI) would leave
    the child running after the run ended. The child inherits the held Ctrl-C, which quiet_worker then ignores."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    except BaseException:  # no fork (out of memory): Ctrl-C as before
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    return held


def serve(connection, bpe):
    """A worker: runs each (function, args) that comes on connection and sends back (True, function(*args)), or
    (False, the exception it raised). A thread of its own reads the tasks as they come, so that the main process
    never waits to hand one over while this process works (or waits to hand back a result)."""
    quiet_worker(bpe)
    tasks = queue.Queue()

    def receive():
        try:
            while True:
                tasks.put(connection.recv())
        except (EOFError, OSError):  # the main process closed its end
            tasks.put(None)
    threading.Thread(target=receive, daemon=True).start()
    while (task := tasks.get()) is not None:
        function, args = task
        try:
            result = True, function(*args)
        except Exception as e:
            result = False, e
        connection.send(result)


def map_in_order(workers, function, tasks, num_proc, advice):
    """Yields (task, function(*task)) for each task (a tuple of arguments), in order, computed by the worker
    processes of worker_pool (num_proc of them), which take the tasks in turn. An exception a task raised is raised
    here; a worker that dies ends it in one line, with advice on how to go on."""
    # two tasks per worker in flight: the workers never wait for work, and memory stays bounded however slow they are
    in_flight = deque()

    def died():
        return UserError(f"a tokenizer worker process died (killed by the out-of-memory killer, or by kill -9?); "
                         f"{advice}")

    def result():
        task, connection = in_flight.popleft()
        try:
            ok, value = connection.recv()
        except (EOFError, OSError):  # its worker died, before or while it sent the result
            raise died() from None
        if not ok:
            raise value
        return task, value

    for n, task in enumerate(tasks):
        connection = workers[n % num_proc][1]
        try:
            connection.send((function, task))
        except OSError:  # its worker died before the task came
            raise died() from None
        in_flight.append((task, connection))
        if len(in_flight) >= 2 * num_proc:
            yield result()
    while in_flight:
        yield result()


def encode_texts(*args):
    """In a worker: its ExactBPE's encode_texts(*args)."""
    return _bpe.encode_texts(*args)


def in_child_process(function, *args):
    """function(*args), computed in a child process: for work that stays in native code for minutes (training a
    BPE), which Ctrl-C could not stop at once in this process. Ctrl-C here ends the child at once; a UserError or
    other exception of the child's is raised here; its death (the out-of-memory killer) ends this in one line. Its
    memory goes with it."""
    context = multiprocessing.get_context('fork' if sys.platform == 'linux' else None)
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=child_main, args=(sending, function, args))
    held = start_holding_ctrl_c(child)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C now meets the finally that ends the child
        sending.close()
        failed, result = receiving.recv()
    except EOFError:  # it died before it could answer
        raise UserError("the BPE trainer's process died (killed by the out-of-memory killer, or by kill -9?); "
                        "lower --tokenizer_mb, or run the same command again") from None
    finally:
        child.kill()
        child.join()
    if failed:
        raise result
    return result


def child_main(sending, function, args):
    quiet_worker()
    try:
        result = False, function(*args)
    except Exception as e:
        result = True, e
    sending.send(result)


# ----------------------------------------------------------------------------- writing a dataset

def report_dataset(out, out_dir, outputs, tokens, seconds, vocab_size):
    """A data script's result, on out (its stdout; notes and progress go to stderr): what it wrote, and a command
    that trains on it in minutes on this machine (hardware.quick_command)."""
    import hardware  # torch, to know the machine's device: only now, at the end
    for split in SPLITS:
        print(f"{split} has {tokens[split]:,} tokens", file=out)
    print(f"wrote {', '.join(outputs)} to {out_dir} in {seconds:.1f}s ({sum(tokens.values()) / seconds:,.0f} "
          f"tokens/s)", file=out)
    command = hardware.quick_command(os.path.basename(os.path.abspath(out_dir)), hardware.default_device(), vocab_size)
    print(f"train with: {command}", file=out)


def move_in(out_dir, built, remove=()):
    """Gives the files built ({final name: path in out_dir}, complete) their final names in out_dir and removes the
    files named in remove (an earlier dataset's that would contradict the new one), as one change (fileio.commit):
    whenever it is killed, every reader sees the earlier dataset or the new one."""
    for path in built.values():
        with open(path, 'rb+') as f:
            os.fsync(f.fileno())
    commit(out_dir, {os.path.basename(path): name for name, path in built.items()}, remove)


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
            if not done and read_record(out_dir) is None:  # with a record, they are its roll-forward's
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


def write_meta(path, vocab):
    """A dataset's vocabulary as its meta.pkl at path (see tokenizer.py)."""
    with open(path, 'wb') as f:
        tokenizer.write_meta(f, vocab)


# ----------------------------------------------------------------------------- the command line, the input

OPTIONS = {  # every data script's options: (type, help); each script names its own with their defaults
    'input': (str, "the text: a file, a directory (its *.txt, recursively) or a quoted glob; for the shakespeare "
                   "prepares one file (default: input.txt in --out_dir, downloaded from --url when absent)"),
    'url': (str, "where to download input.txt from when absent"),
    'name': (str, "dataset name: writes DATA_DIR/NAME, trains with --dataset=NAME"),
    'tokenizer': (str, "char (one token per character, the vocabulary in meta.pkl), gpt2 (GPT-2's BPE), bpe (a "
                       "byte-level BPE of --vocab_size tokens trained on the input, saved in meta.pkl), or the "
                       "meta.pkl of a dataset prepared with bpe: its BPE (default: {default})"),
    'vocab_size': (int, "--tokenizer bpe: its tokens, the 256 bytes and <|endoftext|> included; at most 65,536 "
                        "(uint16 ids) (default: {default})"),
    'tokenizer_mb': (int, "--tokenizer bpe: the megabytes of text it is trained on, which bound its memory: an "
                          "evenly spread sample of a larger text input, or a parquet input's first documents "
                          "(default: {default})"),
    'val_fraction': (float, "the last part of the tokens kept for val (default: {default})"),
    'dataset': (str, "Hugging Face dataset repository (default: {default})"),
    'subset': (str, "the subset (default: {default})"),
    'data_files': (str, "local parquet files instead of the Hub: a file, a directory or a quoted glob such as "
                        "'mirror/**/*.parquet' (the offline way)"),
    'text_column': (str, "the parquet column holding the text (default: {default})"),
    'revision': (str, "the dataset's branch, tag or commit on the Hub (default: {default})"),
    'val_every': (int, "documents 0, N, 2N, ... go to val.bin (default: {default})"),
    'num_proc': (int, "tokenizer processes (default: all cores, {default})"),
    'bpe': (str, "the BPE's encoder: gigatoken (fast, checked against tiktoken as it goes), tiktoken (the "
                 "reference), or auto: gigatoken where it is installed (default: {default})"),
    'out_dir': (str, "where the outputs go (default: {default})"),
    'data_dir': (str, "where the NAME folder goes (default: {default})"),
}
CHOICES = {'tokenizer': ('char', 'gpt2', 'bpe'), 'bpe': tokenizer.BPES}


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes (an unknown option, a value of the wrong type) are UserErrors: one line and
    exit code 1, as every other mistake, not its usage and exit code 2."""

    def error(self, message):
        raise UserError(f"{message}; see {self.prog} --help")


def parse_args(description, **defaults):
    """The command line of a data script: the options of OPTIONS named in defaults, each with its default (...:
    required). Their rules are checked here, in one block, as UserErrors."""
    parser = OneLineParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        kind, help = OPTIONS[name]
        parser.add_argument(f'--{name}', type=kind, required=default is ..., default=None if default is ... else default,
                            help=help.format(default=default))
    args = parser.parse_args()
    for name, choices in CHOICES.items():
        if name in defaults and getattr(args, name) not in choices and not (name == 'tokenizer' and
                                                                            os.path.isfile(args.tokenizer)):
            raise UserError(f"--{name} must be one of {', '.join(choices)}" + (
                " or a dataset's meta.pkl" if name == 'tokenizer' else "") + f", got {getattr(args, name)}")
    for name, value in vars(args).items():
        if isinstance(value, str) and '\0' in value:
            raise UserError(f"--{name} holds a NUL character, which no path or name can")
        if isinstance(value, int) and not -2**63 <= value < 2**63:  # what numpy and C take
            raise UserError(f"--{name} must be less than 2**63 in size, got {value}")
    if 'num_proc' in defaults and not 1 <= args.num_proc <= 4096:
        raise UserError(f"--num_proc must be from 1 to 4096, got {args.num_proc}")
    for name in ('val_every', 'tokenizer_mb'):
        if name in defaults and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if 'vocab_size' in defaults and not tokenizer.MIN_VOCAB <= args.vocab_size <= tokenizer.MAX_VOCAB:
        raise UserError(f"--vocab_size must be from {tokenizer.MIN_VOCAB} (the 256 bytes and {tokenizer.EOT}) to "
                        f"{tokenizer.MAX_VOCAB:,} (uint16 ids), got {args.vocab_size}")
    if 'val_fraction' in defaults and not 0 < args.val_fraction < 1:
        raise UserError(f"--val_fraction must be between 0 and 1, got {args.val_fraction}")
    if 'name' in defaults and (args.name in ('', '.', '..') or os.path.basename(args.name) != args.name):
        raise UserError(f"--name must be a plain folder name, got {args.name!r}")
    for name in ('out_dir', 'data_dir'):
        if name in defaults:
            check_directory_path(getattr(args, name), name)
    return args


def given_vocab(args):
    """The vocabulary that --tokenizer gives: GPT-2's for gpt2, the trained BPE in the meta.pkl it names; None for
    char and bpe, whose vocabulary is made from the input."""
    if args.tokenizer in ('char', 'bpe'):
        return None
    if args.tokenizer == 'gpt2':
        return tokenizer.GPT2_VOCAB
    vocab = tokenizer.load_meta(args.tokenizer)
    if vocab.get('bpe') != 'trained':
        raise UserError(f"--tokenizer {args.tokenizer} holds {tokenizer.describe(vocab)}, not a trained BPE; name the "
                        f"meta.pkl of a dataset prepared with --tokenizer bpe")
    return vocab


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


def prepare_parquet(args, out, hub_folder=None):
    """Tokenizes the dataset that args name (see the web datasets' prepare.py) into args.out_dir's train.bin and
    val.bin, and for --tokenizer bpe the meta.pkl of the BPE trained on its first documents; says what it wrote on
    out (report_dataset). Until the end they are
    train.bin.partial, val.bin.partial and meta.pkl.partial, and prepare_progress.json records the state after each
    finished source file, which a run killed at any moment goes on from."""
    out_dir = args.out_dir
    if args.tokenizer == 'char':
        raise UserError("--tokenizer char is data/prepare_text.py's; the web datasets take gpt2 or bpe")
    # GPT-2's BPE files, when they are missing offline, fail here, before anything is written; a BPE to train
    # is chosen once trained (tokenize_parquet)
    vocab = given_vocab(args)
    bpe = tokenizer.choose_bpe(args.bpe, vocab) if vocab else None
    go_on = "run the same command again: it goes on from the last finished source file"
    t0 = time.time()
    with writing(out_dir, f"free some space and {go_on}"):
        os.makedirs(out_dir, exist_ok=True)
        claim(out_dir, "wait for the other run to end")
        state, tokens, bpe = tokenize_parquet(args, hub_folder, bpe, go_on)
        built = {f'{split}.bin': os.path.join(out_dir, f'{split}.bin.partial') for split in SPLITS}
        gpt2 = bpe.vocab == tokenizer.GPT2_VOCAB
        if not gpt2:
            built['meta.pkl'] = os.path.join(out_dir, 'meta.pkl.partial')
            if vocab:  # given by --tokenizer; a trained one is there already
                write_meta(built['meta.pkl'], vocab)
        # in the same change: an earlier dataset's meta.pkl would make train.py read GPT-2's ids with its vocabulary,
        # and the progress file beside a finished dataset would send a rerun looking for partial outputs that are gone
        move_in(out_dir, built, remove=('meta.pkl', 'prepare_progress.json') if gpt2 else ('prepare_progress.json',))
        shutil.rmtree(os.path.join(out_dir, 'downloads'), ignore_errors=True)
    print(f"{state['documents']:,} documents ({state['val_documents']:,} in val) from {len(state['sources'])} "
          f"source files", file=out)
    report_dataset(out, out_dir, list(built), state['tokens'], time.time() - t0, bpe.vocab['vocab_size'])


def start_or_resume(args, hub_folder, partial, progress_path):
    """The state of the job args name: a fresh one, or that after the last source file a killed run finished, with
    the partial outputs cut back to it."""
    job = {'dataset': None if args.data_files else args.dataset, 'hub_folder': None if args.data_files else hub_folder,
           'revision': None if args.data_files else args.revision, 'data_files': args.data_files,
           'text_column': args.text_column, 'val_every': args.val_every,
           **({'vocab_size': args.vocab_size, 'tokenizer_mb': args.tokenizer_mb} if args.tokenizer == 'bpe' else
              {'tokenizer': tokenizer.fingerprint(given_vocab(args))} if args.tokenizer != 'gpt2' else {})}
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
    """prepare_parquet's work: every source file left, tokenized into the partial outputs with bpe (a
    tokenizer.ExactBPE; None: one trained first, see trained_vocab). Returns the final state, the number of tokens
    this run wrote and the ExactBPE. go_on: how to go on after a worker died."""
    out_dir = args.out_dir
    partial = {split: os.path.join(out_dir, f'{split}.bin.partial') for split in SPLITS}
    progress_path = os.path.join(out_dir, 'prepare_progress.json')
    download_dir = os.path.join(out_dir, 'downloads')
    state = start_or_resume(args, hub_folder, partial, progress_path)
    sources = state['sources']

    def fetch(i):
        return sources[i] if args.data_files else hub_download(args.dataset, state['commit'], sources[i], download_dir)

    if bpe is None:
        bpe = tokenizer.choose_bpe(args.bpe, trained_vocab(args, state, progress_path))

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
                yield path, args.text_column, start, end, i, task

    t0 = time.time()
    tokens_at_start = sum(state['tokens'].values())
    files = {}  # path -> (its index in sources, its number of rows), for the files under way
    print(f"tokenizing with {bpe.name}" + (" (checked against tiktoken as it goes)" if bpe.fast else ""))
    try:
        with worker_pool(args.num_proc, bpe) as pool, ThreadPoolExecutor(1) as downloader, \
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
    except tokenizer.Mismatch as e:
        for path in (*partial.values(), progress_path, os.path.join(out_dir, 'meta.pkl.partial')):
            if os.path.exists(path):  # written by a BPE that is wrong somewhere: start over
                os.remove(path)
        raise tokenizer.Mismatch(f"{e}; its output so far is deleted: run the same command with --bpe tiktoken") \
            from None
    return state, sum(state['tokens'].values()) - tokens_at_start, bpe


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


def encode_rows(path, text_column, start, end, source, task):
    """encode_texts of the text of rows [start, end) of a parquet file (the task-th range of file number source),
    each closed by <|endoftext|>. It runs in a worker, which reads the rows itself: only the ids travel between
    processes."""
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
    return encode_texts(texts, itertools.repeat(True), source, task, path, start)


# ----------------------------------------------------------------------------- a BPE trained on the web datasets

TRAINING_PIECE = 2**16  # characters: rustbpe holds tokenizer.TRAINER_BUFFER texts at once, whatever their size


def trained_vocab(args, state, progress_path):
    """The BPE of --vocab_size tokens trained on the first --tokenizer_mb of the documents of state's sources, once:
    a run that goes on from one that trained it reads it back from meta.pkl.partial."""
    path = os.path.join(args.out_dir, 'meta.pkl.partial')
    if state.get('vocab'):
        vocab = tokenizer.load_meta(path) if os.path.exists(path) else None
        if vocab is None or tokenizer.fingerprint(vocab) != state['vocab']:
            raise UserError(f"{path} is missing or not the BPE that {progress_path} records; delete "
                            f"{progress_path} to start over")
        return vocab
    print(f"training a BPE of {args.vocab_size:,} tokens on the first {args.tokenizer_mb:,} MB of the documents")
    t0 = time.time()
    vocab, sample = in_child_process(train_on_first_documents, args, state['sources'], state['commit'])
    print(f"trained it on {sample['bytes'] / 1e6:,.1f} MB ({sample['documents']:,} documents) in "
          f"{time.time() - t0:.0f}s")
    write_atomically(path, lambda f: tokenizer.write_meta(f, vocab))
    state['vocab'] = tokenizer.fingerprint(vocab)
    save_progress(progress_path, state)
    return vocab


def train_on_first_documents(args, sources, commit):
    """(the BPE, {'bytes': .., 'documents': ..} it learnt from): --vocab_size tokens learnt from the first
    --tokenizer_mb of the documents of sources (parquet files, downloaded from the Hub as needed)."""
    sample = {'bytes': 0, 'documents': 0}

    def first_documents():
        for source in sources:
            path = source if args.data_files else hub_download(args.dataset, commit, source,
                                                                os.path.join(args.out_dir, 'downloads'))
            for batch in open_parquet(path, args.text_column).iter_batches(BATCH_DOCUMENTS, columns=[args.text_column]):
                for text in batch.column(0).to_pylist():
                    if sample['bytes'] >= args.tokenizer_mb * 10**6:
                        return
                    text = text or ''
                    sample['bytes'] += len(text.encode('utf-8'))
                    sample['documents'] += 1
                    # a word cut in two at a piece's end counts as two: once in 64k characters, which BPE ignores
                    yield from (text[k:k + TRAINING_PIECE] for k in range(0, len(text), TRAINING_PIECE))
    return tokenizer.train_bpe(first_documents(), args.vocab_size, args.num_proc), sample
