"""dataloader.get_batch: windows of the token file, chosen by (seed, split, step) alone."""

import numpy as np
import torch

from dataloader import get_batch


def test_y_is_x_shifted_by_one_token_of_the_file(char_data_root):
    data_dir = char_data_root / 'data' / 'shakespeare_char'
    tokens = np.fromfile(data_dir / 'train.bin', dtype=np.uint16).astype(np.int64)
    x, y = get_batch(data_dir, 'train', 4, 16, 1337, 0)
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    windows = np.lib.stride_tricks.sliding_window_view(tokens, 16)
    for row_x, row_y in zip(x, y):
        start = np.flatnonzero((windows == row_x.numpy()).all(axis=1))[0]  # where the row is in the file
        assert torch.equal(row_y, torch.from_numpy(tokens[start + 1:start + 17]))


def test_batch_depends_only_on_seed_split_and_step(char_data_root):
    data_dir = char_data_root / 'data' / 'shakespeare_char'
    x, _ = get_batch(data_dir, 'train', 4, 16, 1337, 7)
    get_batch(data_dir, 'train', 4, 16, 1337, 3)  # nothing carries over from one call to the next
    assert torch.equal(get_batch(data_dir, 'train', 4, 16, 1337, 7)[0], x)
    assert not torch.equal(get_batch(data_dir, 'train', 4, 16, 1337, 8)[0], x)
    assert not torch.equal(get_batch(data_dir, 'train', 4, 16, 1338, 7)[0], x)
    assert not torch.equal(get_batch(data_dir, 'val', 4, 16, 1337, 7)[0], x)


def test_rows_of_a_global_batch_do_not_depend_on_how_it_is_split(char_data_root):
    # one process taking 8 rows, or 4 processes (or micro-steps) taking 2 rows each
    data_dir = char_data_root / 'data' / 'shakespeare_char'
    whole, _ = get_batch(data_dir, 'train', 8, 16, 1337, 5)
    parts = [get_batch(data_dir, 'train', 2, 16, 1337, 5, first_row=row)[0] for row in (0, 2, 4, 6)]
    assert torch.equal(torch.cat(parts), whole)


def test_windows_past_2_to_the_31_tokens_of_a_sparse_4_gib_file_are_read(tmp_path):
    # a 10B-token train.bin is 20 GB: offsets pass 2**31 (and int32); only the windows are read, not the file
    from dataloader import batch_offsets
    num_tokens, block_size = 2**31 + 2**30, 8
    path = tmp_path / 'train.bin'
    with open(path, 'wb') as f:
        f.truncate(2 * num_tokens)  # 6 GiB that take no disk: reads give zeros except where written below
        offsets = batch_offsets(num_tokens, 4, block_size, 1337, 'train', 3)
        expected = []
        for row, offset in enumerate(offsets):
            window = np.arange(block_size + 1, dtype=np.uint16) + 100 * (row + 1)
            f.seek(2 * int(offset))
            f.write(window.tobytes())
            expected.append(window.astype(np.int64))
    assert (offsets > 2**31).sum() >= 2  # this seed puts half the rows past 2**31
    x, y = get_batch(tmp_path, 'train', 4, block_size, 1337, 3)
    expected = torch.from_numpy(np.stack(expected))
    assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])
