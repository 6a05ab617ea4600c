"""
Batches of token windows from a prepared dataset: data/<dataset>/train.bin and val.bin, uint16 token ids.

The rows of a batch are random windows of block_size + 1 tokens (x is the first block_size, y the same shifted
by one). The window offsets of batch `step` of a split are drawn from a generator seeded with (seed, split, step)
alone, so a batch is the same whatever came before it: a resumed run sees the batches the uninterrupted run would
have seen, and any number of processes see the same global batch, each taking its own rows of it:

    x, y = get_batch(data_dir, 'train', batch_size, block_size, seed, step, first_row, device)

returns rows first_row .. first_row + batch_size - 1 of that batch (first_row=0 for a single process).
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


def batch_offsets(num_tokens, num_rows, block_size, seed, split, step):
    """Where the first num_rows windows of batch `step` of split start; a window needs block_size + 1 tokens."""
    rng = np.random.default_rng([seed, SPLITS.index(split), step])
    return rng.integers(0, num_tokens - block_size, size=num_rows)


def get_batch(data_dir, split, batch_size, block_size, seed, step, first_row=0, device='cpu'):
    """x, y (batch_size, block_size) int64 on device: rows first_row.. of batch `step` of split ('train' or 'val')."""
    data = open_tokens(data_dir, split)
    offsets = batch_offsets(len(data), first_row + batch_size, block_size, seed, split, step)[first_row:]
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
