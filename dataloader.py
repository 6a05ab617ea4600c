"""
Batches of token windows from a prepared dataset: data/<dataset>/train.bin and val.bin, uint16 token ids.

A row of a batch is a window of block_size + 1 tokens (x is the first block_size, y the same shifted by one).
Where the windows of batch `step` start is a function of (seed, split, step) alone, and for data_order='epoch' of
the global batch's rows too, so a batch is the same whatever came before it: a resumed run sees the batches the
uninterrupted run would have seen, and any number of processes see the same global batch, each taking its own rows:

    x, y = get_batch(data_dir, 'train', batch_size, block_size, seed, step, first_row, device, order, rows_per_step)

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

import numpy as np
import torch

from errors import UserError

SPLITS = ('train', 'val')


def open_tokens(data_dir, split):
    # a fresh memmap per batch: a long-lived one keeps every page it touched in memory, see
    # https://stackoverflow.com/questions/45132940/numpy-memmap-memory-usage-want-to-iterate-once/61472122#61472122
    return np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')


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


def epochs_ended(data_dir, block_size, order, rows_per_step, step):
    """The epochs of train.bin (counted from 1) that end in global batch `step`: its rows read their last
    windows. None for order 'random', which has no epochs."""
    if order != 'epoch':
        return range(0)
    num_windows = (len(open_tokens(data_dir, 'train')) - 1) // block_size
    return range(step * rows_per_step // num_windows + 1, (step + 1) * rows_per_step // num_windows + 1)


def get_batch(data_dir, split, batch_size, block_size, seed, step, first_row=0, device='cpu', order='random',
              rows_per_step=None):
    """x, y (batch_size, block_size) int64 on device: rows first_row.. of batch `step` of split ('train' or 'val')
    in order 'random' or 'epoch' (which needs rows_per_step, the global batch's rows)."""
    data = open_tokens(data_dir, split)
    offsets = batch_offsets(len(data), first_row + batch_size, block_size, seed, split, step, order,
                            rows_per_step)[first_row:]
    windows = torch.from_numpy(data[offsets[:, None] + np.arange(block_size + 1)].astype(np.int64))
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


def check_dataset(data_dir, block_size):
    """Raises a UserError unless data_dir holds train.bin and val.bin, each longer than block_size tokens."""
    name = os.path.basename(os.path.normpath(data_dir))
    prepare = os.path.join(data_dir, 'prepare.py')
    if os.path.isfile(prepare):
        how = f"run python {prepare}"
    else:
        how = f"prepare it, e.g. python data/prepare_text.py --input YOUR_TEXT --name {name}"
    if not os.path.isdir(data_dir):
        raise UserError(f"no dataset directory {data_dir}; {how} (or pick another --dataset)")
    for split in SPLITS:
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise UserError(f"no {path}; {how}")
        if os.path.getsize(path) % 2:
            raise UserError(f"{path} has an odd number of bytes, so it is not uint16 token ids (it is cut short, or "
                            f"not a dataset); {how}")
        num_tokens = os.path.getsize(path) // 2
        if num_tokens < block_size + 1:
            raise UserError(f"{path} has {num_tokens} tokens, fewer than block_size + 1 = {block_size + 1}; "
                            f"use a smaller --block_size or more data")
