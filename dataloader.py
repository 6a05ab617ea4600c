"""
Batches of token windows from a prepared dataset: data/<dataset>/train.bin and val.bin, uint16 token ids.

A run reads the dataset it started with: open_dataset opens its files once, as one committed state of the folder
(fileio.open_snapshot), and every batch maps those open files, so a data script that moves a new dataset in
meanwhile changes nothing for the run (the processes of a torchrun check that they opened the same files).

A row of a batch is a window of block_size + 1 tokens (x is the first block_size, y the same shifted by one).
Where the windows of batch `step` start is a function of (seed, split, step) alone, and for data_order='epoch' of
the global batch's rows too, so a batch is the same whatever came before it: a resumed run sees the batches the
uninterrupted run would have seen, and any number of processes see the same global batch, each taking its own rows:

    x, y = get_batch(dataset, 'train', batch_size, block_size, seed, step, first_row, device, order, rows_per_step)

returns rows first_row .. first_row + batch_size - 1 of that batch (first_row=0 for a single process).

Two orders (the data_order setting of train.py):
- 'random', nanoGPT's: every row starts at a random token, drawn with replacement. In one pass over the data's
  tokens about 1/e (37%) of them are never read, and 26% are read twice or more.
- 'epoch': the windows that start at multiples of block_size (window i at token i * block_size) are read each
  exactly once per epoch, in an order that changes with every epoch. The global batches read the rows of the
  first epoch, then of the second, ... one after the other: row r of global batch `step` is row
  step * rows_per_step + r of that stream (rows_per_step: the global batch's rows). The order is a seeded
  bijection of the window numbers, computed for the rows asked for (see window_numbers), so a process needs no
  memory for it, however large the dataset.
"""

import os
import socket

import numpy as np
import torch
import torch.distributed as dist

from errors import UserError
from fileio import open_snapshot

SPLITS = ('train', 'val')


def open_tokens(dataset, split):
    # a fresh memmap per batch: a long-lived one keeps every page it touched in memory, see
    # https://stackoverflow.com/questions/45132940/numpy-memmap-memory-usage-want-to-iterate-once/61472122#61472122
    # It maps the file open_dataset opened, not the name, which a data script may have given to a new one since.
    return np.memmap(dataset[split], dtype=np.uint16, mode='r')


FEISTEL_ROUNDS = 6 # 4 already make a pseudo-random permutation (Luby-Rackoff); 2 more for a better mix


def batch_offsets(num_tokens, num_rows, block_size, seed, split, step, order='random', rows_per_step=None):
    """Where the first num_rows windows of global batch `step` of split start; a window needs block_size + 1
    tokens. order 'epoch' needs rows_per_step, the global batch's rows (at least num_rows)."""
    if order == 'random':
        rng = np.random.default_rng([seed, SPLITS.index(split), step])
        return rng.integers(0, num_tokens - block_size, size=num_rows)
    assert order == 'epoch' and num_rows <= rows_per_step, (order, num_rows, rows_per_step)
    num_windows = (num_tokens - 1) // block_size
    rows = step * rows_per_step + np.arange(num_rows, dtype=np.int64) # in the stream of epoch after epoch
    epochs, positions = np.divmod(rows, num_windows)
    windows = np.empty(num_rows, dtype=np.int64)
    for epoch in np.unique(epochs): # one, or two where the batch crosses from one epoch into the next
        key = np.random.default_rng([seed, SPLITS.index(split), int(epoch)]).integers(
            0, 2**64, size=FEISTEL_ROUNDS, dtype=np.uint64)
        windows[epochs == epoch] = window_numbers(positions[epochs == epoch], num_windows, key)
    return windows * block_size


def window_numbers(positions, num_windows, key):
    """The window at each position (numbers < num_windows) of an epoch's order, keyed by key (FEISTEL_ROUNDS
    numbers): a bijection of range(num_windows) worked out for these positions alone, with no table of the order.
    A Feistel network permutes the 4**half numbers of 2 * half bits, the fewest of 4**half >= num_windows (so
    fewer than 4 * num_windows); a number it sends past num_windows goes through it again until it lands below
    (cycle-walking: following the big permutation's cycles from range(num_windows) back into it is a
    permutation of range(num_windows)), fewer than 4 times on average."""
    half = max(1, (int(num_windows - 1).bit_length() + 1) // 2)
    numbers = positions.astype(np.uint64)
    outside = np.ones(len(numbers), dtype=bool)
    while outside.any():
        numbers[outside] = feistel(numbers[outside], half, key)
        outside = numbers >= num_windows
    return numbers.astype(np.int64)


def feistel(numbers, half, key):
    """A permutation of the numbers of 2 * half bits (uint64 array): the rounds of a Feistel network on the high
    and the low half, each mixing one half into the other with a round key. Any round function makes this a
    bijection; splitmix64's finaliser makes the order look random."""
    mask = np.uint64(2**half - 1)
    high, low = numbers >> np.uint64(half), numbers & mask
    for round_key in key:
        mixed = (low ^ round_key) * np.uint64(0xBF58476D1CE4E5B9) # uint64 arithmetic wraps around, as wanted
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0x94D049BB133111EB)
        mixed ^= mixed >> np.uint64(29)
        high, low = low, high ^ (mixed & mask)
    return (high << np.uint64(half)) | low


def epochs_ended(dataset, block_size, order, rows_per_step, step):
    """The epochs of train.bin (counted from 1) that end in global batch `step`: its rows read their last
    windows. None for order 'random', which has no epochs."""
    if order != 'epoch':
        return range(0)
    num_windows = (len(open_tokens(dataset, 'train')) - 1) // block_size
    return range(step * rows_per_step // num_windows + 1, (step + 1) * rows_per_step // num_windows + 1)


class BadTokens(UserError):
    """Token ids that the vocabulary does not have: a dataset whose files do not belong together, or a corrupt one."""


def bad_tokens(dataset, split, ids, start, vocab_size):
    """A BadTokens naming the first id of ids (read from split's file at token start) that is vocab_size or more."""
    position = int(np.argmax(ids >= vocab_size))
    path = os.path.join(os.path.dirname(dataset[split].name), f'{split}.bin')  # (not a pending change's temp name)
    return BadTokens(f"{path} holds token id {int(ids[position])} at token {start + position:,}, but its vocabulary "
                     f"has only {vocab_size} ids (0..{vocab_size - 1}): the files of the dataset do not belong "
                     f"together, or it is corrupt; prepare it again")


CHECKED_STRETCHES = 64  # check_token_ids reads this many stretches of each file ...
STRETCH_TOKENS = 2**15  # ... of this many tokens: 4 MB of a file at most, whatever its size


def check_token_ids(dataset, vocab_size):
    """Raises BadTokens when a sample of dataset's train.bin and val.bin (their first and last tokens and evenly
    spread stretches between, 4 MB of each at most) holds an id of vocab_size or more: files of another vocabulary
    are found at once, before anything is written. get_batch checks every batch as it is read, for the rest."""
    for split in SPLITS:
        data = open_tokens(dataset, split)
        starts = np.unique(np.linspace(0, max(len(data) - STRETCH_TOKENS, 0), CHECKED_STRETCHES).astype(np.int64))
        for start in starts:
            ids = data[start:start + STRETCH_TOKENS]
            if ids.size and ids.max() >= vocab_size:
                raise bad_tokens(dataset, split, ids, int(start), vocab_size)


def get_batch(dataset, split, batch_size, block_size, seed, step, first_row=0, device='cpu', order='random',
              rows_per_step=None, vocab_size=None):
    """x, y (batch_size, block_size) int64 on device: rows first_row.. of batch `step` of split ('train' or 'val')
    of dataset (open_dataset's) in order 'random' or 'epoch' (which needs rows_per_step, the global batch's rows).
    With vocab_size, an id of vocab_size or more raises BadTokens rather than reach the model's embedding (an index
    error there)."""
    data = open_tokens(dataset, split)
    offsets = batch_offsets(len(data), first_row + batch_size, block_size, seed, split, step, order,
                            rows_per_step)[first_row:]
    windows = data[offsets[:, None] + np.arange(block_size + 1)]
    if vocab_size is not None and windows.max() >= vocab_size:
        row = int(np.argmax((windows >= vocab_size).any(axis=1)))
        raise bad_tokens(dataset, split, windows[row], int(offsets[row]), vocab_size)
    windows = torch.from_numpy(windows.astype(np.int64))
    x = windows[:, :-1].contiguous()
    y = windows[:, 1:].contiguous()
    if torch.device(device).type == 'cuda':
        # pinned host memory lets the copy to the GPU run while the GPU works (non_blocking). CUDA only: pin_memory()
        # needs an accelerator (on a CPU-only machine it raises), and to('cpu') is no copy at all (PyTorch docs,
        # "A guide on good usage of non_blocking and pin_memory()")
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    else:
        x, y = x.to(device), y.to(device)
    return x, y


def open_dataset(data_dir, block_size):
    """{'train': file, 'val': file, 'meta.pkl': file or None}: the dataset in data_dir as its last committed change
    left it, open for the whole run (see the top). Raises a UserError unless it has train.bin and val.bin, each of
    whole uint16 ids and longer than block_size tokens."""
    name = os.path.basename(os.path.normpath(data_dir))
    prepare = os.path.join(data_dir, 'prepare.py')
    if os.path.isfile(prepare):
        how = f"run python {prepare}"
    else:
        how = f"prepare it, e.g. python data/prepare_text.py --input YOUR_TEXT --name {name}"
    if not os.path.isdir(data_dir):
        raise UserError(f"no dataset directory {data_dir}; {how} (or pick another --dataset)")
    files = open_snapshot(data_dir, [f'{split}.bin' for split in SPLITS] + ['meta.pkl'])
    dataset = {split: files[f'{split}.bin'] for split in SPLITS} | {'meta.pkl': files['meta.pkl']}
    for split in SPLITS:
        path = os.path.join(data_dir, f'{split}.bin')
        if dataset[split] is None:
            raise UserError(f"no {path}; {how}")
        size = os.fstat(dataset[split].fileno()).st_size
        if size % 2:
            raise UserError(f"{path} has an odd number of bytes, so it is not uint16 token ids (it is cut short, or "
                            f"not a dataset); {how}")
        if size // 2 < block_size + 1:
            raise UserError(f"{path} has {size // 2} tokens, fewer than block_size + 1 = {block_size + 1}; "
                            f"use a smaller --block_size or more data")
    return dataset


def check_same_dataset(dataset, data_dir):
    """Under torchrun, raises a UserError unless every process opened the same dataset: the same files on each
    host, and files of the same sizes on all. A data script that moved a new dataset into data_dir between the
    processes' open_dataset would make them train on different data."""
    if not dist.is_initialized():
        return
    stats = [f and os.fstat(f.fileno()) for f in dataset.values()]
    opened = [None] * dist.get_world_size()
    dist.all_gather_object(opened, (socket.gethostname(), [s and s.st_size for s in stats],
                                    [s and (s.st_dev, s.st_ino) for s in stats]))
    files_of_host = {}
    for host, _, files in opened:
        files_of_host.setdefault(host, set()).add(tuple(files))
    if len({tuple(sizes) for _, sizes, _ in opened}) > 1 or any(len(f) > 1 for f in files_of_host.values()):
        raise UserError(f"the processes opened different datasets in {data_dir}: a data script moved a new one in "
                        f"as they started; start the run again")
