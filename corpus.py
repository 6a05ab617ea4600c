"""
Text to training data: GPT-2 ids as uint16, each document closed by <|endoftext|> (50256), appended to the
.bin files that train.py reads. Shared by the data scripts:

- encode_in_order: batches of texts encoded by worker processes on all cores, handed back in order.
- prepare_parquet: the web datasets' job (data/fineweb, data/openwebtext). Parquet files, from the Hugging Face
  Hub one at a time or from local --data_files, go to train.bin and val.bin. Progress is recorded after each
  source file, so a killed run goes on from there with the same command and ends byte for byte as an
  uninterrupted one.
"""

import argparse
import errno
import glob
import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

from configurator import UserError
from fileio import write_atomically
from tokenizer import gpt2_encoding

EOT = 50256
SPLITS = ('train', 'val')
BATCH_DOCUMENTS = 256  # documents a worker encodes at a time: ~1 MB of web text, a fraction of a second
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f, FAT32's 4 GB)


# ----------------------------------------------------------------------------- encoding and writing

def encode_texts(texts, ends):
    """The GPT-2 ids of texts, concatenated, with EOT after each text whose `ends` is true (uint16); and each
    text's number of tokens, EOT included (int64)."""
    enc = gpt2_encoding()  # cached by tiktoken: loaded once per process
    lengths = np.empty(len(texts), dtype=np.int64)
    arrays = []
    for i, (text, end) in enumerate(zip(texts, ends)):
        ids = enc.encode_ordinary(text or '')  # encode_ordinary: '<|endoftext|>' in a text is just text
        if end:
            ids.append(EOT)
        arrays.append(np.array(ids, dtype=np.uint16))  # one document's list of ints alive at a time
        lengths[i] = len(ids)
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint16), lengths


def encode_in_order(pool, batches, num_proc):
    """Yields encode_texts(texts, ends) for each (texts, ends) of batches, in order, encoded by pool's
    num_proc processes."""
    # Pool.imap would read the whole input ahead into its task queue; this keeps two batches per worker
    # in flight, so memory stays bounded however slow the workers
    in_flight = deque()
    for texts, ends in batches:
        in_flight.append(pool.apply_async(encode_texts, (texts, ends)))
        if len(in_flight) >= 2 * num_proc:
            yield in_flight.popleft().get()
    while in_flight:
        yield in_flight.popleft().get()


@contextmanager
def disk_full_is_a_user_error(where, advice):
    """A write that fails for lack of space (or a file-size limit) ends as one line naming where and advice."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise UserError(f"cannot write to {where}: {os.strerror(e.errno)}; {advice}") from None


# ----------------------------------------------------------------------------- the web datasets

def web_dataset_args(description, dataset, val_every, out_dir, subsets=()):
    """The command line of data/fineweb and data/openwebtext's prepare.py."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', default=dataset, help=f"Hugging Face dataset repository (default: {dataset})")
    if subsets:
        parser.add_argument('--subset', default=subsets[0], help=f"one of {', '.join(subsets)} (default: {subsets[0]})")
    parser.add_argument('--data_files', help="local parquet files instead of the Hub: a file, a directory or a "
                                             "quoted glob such as 'mirror/**/*.parquet' (the offline way)")
    parser.add_argument('--text_column', default='text', help="the parquet column holding the text (default: text)")
    parser.add_argument('--revision', default='main', help="the dataset's branch, tag or commit on the Hub")
    parser.add_argument('--val_every', type=int, default=val_every,
                        help=f"documents 0, N, 2N, ... go to val.bin (default: {val_every})")
    parser.add_argument('--num_proc', type=int, default=os.cpu_count() or 1, help="tokenizer processes (default: all cores)")
    parser.add_argument('--out_dir', default=out_dir, help=f"where train.bin and val.bin go (default: {out_dir})")
    args = parser.parse_args()
    if args.num_proc < 1:
        raise UserError(f"--num_proc must be at least 1, got {args.num_proc}")
    if args.val_every < 1:
        raise UserError(f"--val_every must be at least 1, got {args.val_every}")
    return args


def local_sources(pattern):
    """The parquet files named by a file, a directory (its *.parquet, recursively) or a glob, sorted."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, '**', '*.parquet')
    files = sorted(os.path.abspath(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        raise UserError(f"no files match --data_files {pattern}")
    return files


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
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"cannot list {repo} on the Hub ({reason}); {offline_advice(repo)}") from None
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
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot download {path} of {repo} ({reason}); run the same command again to go on, "
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
    """Tokenizes the dataset that args name (see web_dataset_args) into args.out_dir/train.bin and val.bin."""
    gpt2_encoding()  # fail now, not in a worker, when the BPE files cannot be had
    out_dir = args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    final = {split: os.path.join(out_dir, f'{split}.bin') for split in SPLITS}
    partial = {split: f'{final[split]}.partial' for split in SPLITS}
    progress_path = os.path.join(out_dir, 'prepare_progress.json')
    download_dir = os.path.join(out_dir, 'downloads')
    job = {'dataset': None if args.data_files else args.dataset, 'hub_folder': None if args.data_files else hub_folder,
           'revision': None if args.data_files else args.revision, 'data_files': args.data_files,
           'text_column': args.text_column, 'val_every': args.val_every}

    # a fresh start, or the state after the last source file a killed run finished
    state = load_progress(progress_path, job)
    if state is None:
        if args.data_files:
            commit, sources = None, local_sources(args.data_files)
        else:
            commit, sources = hub_sources(args.dataset, hub_folder, args.revision)
        state = {'job': job, 'commit': commit, 'sources': sources, 'done': 0, 'documents': 0,
                 'val_documents': 0, 'tokens': {split: 0 for split in SPLITS}}
        for split in SPLITS:
            open(partial[split], 'wb').close()
        save_progress(progress_path, state)
    else:
        print(f"going on from {progress_path}: {state['done']} of {len(state['sources'])} source files done")
    sources = state['sources']
    for split in SPLITS:  # drop what a killed run wrote after its last recorded file
        size = 2 * state['tokens'][split]
        if os.path.exists(partial[split]) and os.path.getsize(partial[split]) >= size:
            os.truncate(partial[split], size)
        elif not (state['done'] == len(sources) and os.path.exists(final[split])):  # else killed while renaming
            raise UserError(f"{partial[split]} is missing or shorter than {progress_path} records; "
                            f"delete {progress_path} to start over")

    def fetch(i):
        return sources[i] if args.data_files else hub_download(args.dataset, state['commit'], sources[i], download_dir)

    t0 = time.time()
    tokens_at_start = sum(state['tokens'].values())
    bar = tqdm(total=len(sources), initial=state['done'], unit='file', dynamic_ncols=True, disable=None,
               bar_format='{l_bar}{bar}| {n:.2f}/{total} files [{elapsed}<{remaining}{postfix}]')
    with Pool(args.num_proc) as pool, ThreadPoolExecutor(1) as downloader, bar:
        # the next source file downloads while this one is tokenized
        next_file = downloader.submit(fetch, state['done']) if state['done'] < len(sources) else None
        for i in range(state['done'], len(sources)):
            path = next_file.result()
            next_file = downloader.submit(fetch, i + 1) if i + 1 < len(sources) else None
            advice = (f"free some space and run the same command again: it goes on from source file {i + 1} "
                      f"of {len(sources)}")
            with disk_full_is_a_user_error(out_dir, advice):
                for fraction in tokenize_file(path, args, pool, state, partial):
                    bar.update(fraction)
                    tokens_per_s = (sum(state['tokens'].values()) - tokens_at_start) / (time.time() - t0)
                    bar.set_postfix_str(f"{state['documents']:,} docs, {tokens_per_s:,.0f} tok/s", refresh=False)
            state['done'] = i + 1
            with disk_full_is_a_user_error(out_dir, advice):
                save_progress(progress_path, state)
            bar.update(i + 1 - bar.n)
            if not args.data_files:
                os.remove(path)  # the output plus a source file or two on disk, never the whole dataset

    # only now do the outputs take their final names
    for split in SPLITS:
        if os.path.exists(partial[split]):
            os.replace(partial[split], final[split])
    os.remove(progress_path)
    shutil.rmtree(download_dir, ignore_errors=True)
    dt = time.time() - t0
    tokens = sum(state['tokens'].values())
    print(f"{state['documents']:,} documents ({state['val_documents']:,} in val) from {len(sources)} source files")
    print(f"train has {state['tokens']['train']:,} tokens")
    print(f"val has {state['tokens']['val']:,} tokens")
    print(f"wrote train.bin and val.bin to {out_dir} in {dt:.0f}s ({(tokens - tokens_at_start) / dt:,.0f} tokens/s)")


def tokenize_file(path, args, pool, state, partial):
    """Appends a source file's documents to the partial outputs and counts them in state, durably.
    Yields the fraction of the file done, as it goes."""
    f = open_parquet(path, args.text_column)
    num_rows = max(1, f.metadata.num_rows)
    # one row group in memory at a time, cut into batches for the workers
    batches = ((b.column(0).to_pylist(), [True] * b.num_rows)
               for b in f.iter_batches(batch_size=BATCH_DOCUMENTS, columns=[args.text_column]))
    outputs = {split: open(partial[split], 'ab') for split in SPLITS}
    try:
        for ids, lengths in encode_in_order(pool, batches, args.num_proc):
            # document n goes to val when n % val_every == 0: the documents alone decide, not the run
            is_val = (state['documents'] + np.arange(len(lengths))) % args.val_every == 0
            token_is_val = np.repeat(is_val, lengths)
            for split, mask in (('train', ~token_is_val), ('val', token_is_val)):
                split_ids = ids[mask]
                outputs[split].write(split_ids.data)  # not tofile: its short writes carry no errno
                state['tokens'][split] += len(split_ids)
            state['documents'] += len(lengths)
            state['val_documents'] += int(is_val.sum())
            yield len(lengths) / num_rows
        for out in outputs.values():
            out.flush()
            os.fsync(out.fileno())  # on disk before the progress file says so
    finally:
        for out in outputs.values():
            out.close()
