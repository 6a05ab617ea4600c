"""
Text to training data: GPT-2 ids as uint16, each document closed by <|endoftext|> (50256), appended to the
.bin files that train.py reads. Shared by the data scripts:

- encode_texts and map_in_order: texts encoded by worker processes on all cores, handed back in order.
- prepare_parquet: the web datasets' job (data/fineweb, data/openwebtext). Parquet files, from the Hugging Face
  Hub one at a time or from local --data_files, go to train.bin and val.bin. Progress is recorded after each
  source file, so a killed run goes on from there with the same command and ends byte for byte as an
  uninterrupted one. Each worker reads its own row ranges of the files (about TASK_BYTES of text each) and hands
  back ids alone; the main process only writes them, in order.
"""

import argparse
import errno
import functools
import glob
import itertools
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

from errors import UserError
from fileio import write_atomically
from tokenizer import gpt2_encoding

EOT = 50256
EOT_ARRAY = np.array([EOT], dtype=np.uint32)
SPLITS = ('train', 'val')
TASK_BYTES = 2**20  # text a worker reads and encodes per task: ~250k tokens, a fraction of a second
BATCH_DOCUMENTS = 256  # documents a worker holds as Python strings at a time
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f, FAT32's 4 GB)


# ----------------------------------------------------------------------------- encoding and writing

def encode_texts(texts, ends):
    """The GPT-2 ids of texts, concatenated, with EOT after each text whose `ends` is true (uint16); and each
    text's number of tokens, EOT included (int64)."""
    enc = gpt2_encoding()  # cached by tiktoken: loaded once per process
    arrays, lengths = [], []
    for text, end in zip(texts, ends):
        # encode_to_numpy with no special token allowed nor disallowed gives encode_ordinary's ids ('<|endoftext|>'
        # in a text is just text) as an array, without a Python int per token
        ids = enc.encode_to_numpy(text or '', disallowed_special=())
        arrays += [ids, EOT_ARRAY] if end else [ids]
        lengths.append(len(ids) + bool(end))
    ids = np.concatenate(arrays).astype(np.uint16) if arrays else np.zeros(0, dtype=np.uint16)
    return ids, np.array(lengths, dtype=np.int64)


def map_in_order(pool, function, tasks, num_proc):
    """Yields (task, function(*task)) for each task (a tuple of arguments), in order, computed by pool's num_proc
    processes."""
    # Pool.imap would read the whole input ahead into its task queue; this keeps two tasks per worker
    # in flight, so memory stays bounded however slow the workers
    in_flight = deque()
    for task in tasks:
        in_flight.append((task, pool.apply_async(function, task)))
        if len(in_flight) >= 2 * num_proc:
            task, result = in_flight.popleft()
            yield task, result.get()
    while in_flight:
        task, result = in_flight.popleft()
        yield task, result.get()


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

    def tasks():
        """(path, text column, first row, end row) of each row range of the files left, in order."""
        next_file = downloader.submit(fetch, state['done']) if state['done'] < len(sources) else None
        for i in range(state['done'], len(sources)):
            path = next_file.result()
            if i + 1 < len(sources):
                next_file = downloader.submit(fetch, i + 1)  # the next file downloads while this one is tokenized
            f = open_parquet(path, args.text_column)
            files[path] = (i, f.metadata.num_rows)
            for start, end in row_ranges(f, args.text_column):
                yield path, args.text_column, start, end

    t0 = time.time()
    tokens_at_start = sum(state['tokens'].values())
    files = {}  # path -> (its index in sources, its number of rows), for the files under way
    bar = tqdm(total=len(sources), initial=state['done'], unit='file', dynamic_ncols=True, disable=None,
               bar_format='{l_bar}{bar}| {n:.2f}/{total} files [{elapsed}<{remaining}{postfix}]')
    advice = "free some space and run the same command again: it goes on from the last finished source file"
    with Pool(args.num_proc) as pool, ThreadPoolExecutor(1) as downloader, bar, \
            disk_full_is_a_user_error(out_dir, advice), \
            open(partial['train'], 'ab') as train, open(partial['val'], 'ab') as val:  # closed before the error shows
        outputs = {'train': train, 'val': val}
        # the workers read the parquet files themselves and hand back ids alone; this process only writes, in order
        for (path, _, start, end), (ids, lengths) in map_in_order(pool, encode_rows, tasks(), args.num_proc):
            # document n goes to val when n % val_every == 0: the documents alone decide, not the run
            is_val = (state['documents'] + np.arange(len(lengths))) % args.val_every == 0
            token_is_val = np.repeat(is_val, lengths)
            for split, mask in (('train', ~token_is_val), ('val', token_is_val)):
                split_ids = ids[mask]
                outputs[split].write(split_ids.data)  # not tofile: its short writes carry no errno
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


def encode_rows(path, text_column, start, end):
    """encode_texts of the text of rows [start, end) of a parquet file, each closed by EOT. It runs in a worker,
    which reads the rows itself: only the ids travel between processes."""
    f = parquet_file(path)
    group_starts = np.cumsum([0] + [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)]).tolist()
    groups = [g for g in range(f.num_row_groups) if group_starts[g] < end and group_starts[g + 1] > start]

    def texts():
        row = group_starts[groups[0]]
        for batch in f.iter_batches(BATCH_DOCUMENTS, row_groups=groups, columns=[text_column], use_threads=False):
            first, last = max(start - row, 0), min(end - row, batch.num_rows)  # the batch's rows in the range
            yield from batch.column(0)[first:last].to_pylist()
            row += batch.num_rows
            if row >= end:
                return
    return encode_texts(texts() if groups else [], itertools.repeat(True))
