"""dataloader.get_batch: windows of the token file, chosen by (seed, split, step) alone (and the global batch's
rows in data_order='epoch', where each epoch reads every window once)."""

import shutil
import tracemalloc

import numpy as np
import pytest
import torch

from checkpoint import load_checkpoint
from dataloader import batch_offsets, epochs_ended, get_batch, open_dataset
from helpers import SHAKESPEARE, eval_losses, iter_losses, read_log, run_in_process, train
from tokenizer import dataset_vocab


def test_y_is_x_shifted_by_one_token_of_the_file(char_data_root):
    data_dir = char_data_root / 'data' / 'shakespeare_char'
    tokens = np.fromfile(data_dir / 'train.bin', dtype=np.uint16).astype(np.int64)
    x, y = get_batch(open_dataset(data_dir, 16), 'train', 4, 16, 1337, 0)
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    windows = np.lib.stride_tricks.sliding_window_view(tokens, 16)
    for row_x, row_y in zip(x, y):
        start = np.flatnonzero((windows == row_x.numpy()).all(axis=1))[0]  # where the row is in the file
        assert torch.equal(row_y, torch.from_numpy(tokens[start + 1:start + 17]))


def test_batch_depends_only_on_seed_split_and_step(char_data_root):
    data = open_dataset(char_data_root / 'data' / 'shakespeare_char', 16)
    x, _ = get_batch(data, 'train', 4, 16, 1337, 7)
    get_batch(data, 'train', 4, 16, 1337, 3)  # nothing carries over from one call to the next
    assert torch.equal(get_batch(data, 'train', 4, 16, 1337, 7)[0], x)
    assert not torch.equal(get_batch(data, 'train', 4, 16, 1337, 8)[0], x)
    assert not torch.equal(get_batch(data, 'train', 4, 16, 1338, 7)[0], x)
    assert not torch.equal(get_batch(data, 'val', 4, 16, 1337, 7)[0], x)


def test_rows_of_a_global_batch_do_not_depend_on_how_it_is_split(char_data_root):
    # one process taking 8 rows, or 4 processes (or micro-steps) taking 2 rows each
    data = open_dataset(char_data_root / 'data' / 'shakespeare_char', 16)
    whole, _ = get_batch(data, 'train', 8, 16, 1337, 5)
    parts = [get_batch(data, 'train', 2, 16, 1337, 5, first_row=row)[0] for row in (0, 2, 4, 6)]
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
    x, y = get_batch({'train': open(path, 'rb')}, 'train', 4, block_size, 1337, 3)
    expected = torch.from_numpy(np.stack(expected))
    assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])


# ----------------------------------------------------------------------------- data_order='epoch'

def epoch_windows(num_windows, rows_per_step, block_size=8, seed=1337, epochs=2):
    """The window numbers (offset / block_size) that the global batches read, one list per epoch."""
    num_tokens = num_windows * block_size + 1 + block_size // 2  # a tail too short for one more window
    steps = -(-num_windows * epochs // rows_per_step)
    offsets = np.concatenate([batch_offsets(num_tokens, rows_per_step, block_size, seed, 'train', step, 'epoch',
                                            rows_per_step) for step in range(steps)])
    assert (offsets % block_size == 0).all()
    return [list(offsets[e * num_windows:(e + 1) * num_windows] // block_size) for e in range(epochs)]


@pytest.mark.parametrize('num_windows', [1, 2, 3, 7, 1000, 4097])
def test_each_epoch_reads_every_window_once_in_an_order_of_its_own(num_windows):
    # 48 rows a step: 1000 and 4097 windows end their epochs inside a batch, which then reads the next epoch's first
    first, second = epoch_windows(num_windows, 48)
    assert sorted(first) == sorted(second) == list(range(num_windows))
    if num_windows >= 3:
        assert first != second
    if num_windows >= 1000:  # not the order of the file, nor a rotation of it
        assert sum(b == a + 1 for a, b in zip(first, first[1:])) < 10


def test_epoch_order_depends_on_the_seed():
    assert epoch_windows(1000, 48, seed=1337) != epoch_windows(1000, 48, seed=1338)


def test_processes_read_their_rows_of_the_global_epoch_batch(char_data_root):
    # 16 rows a step: one process taking them all, or 2 processes of 2 micro-batches of 4 rows (train.py's
    # first_row), or 4 processes of 1 micro-batch: each reads its rows of the same batch
    data = open_dataset(char_data_root / 'data' / 'shakespeare_char', 16)
    whole, _ = get_batch(data, 'train', 16, 32, 1337, 9, 0, 'cpu', 'epoch', 16)
    for batch_size in (4, 8):
        parts = [get_batch(data, 'train', batch_size, 32, 1337, 9, row, 'cpu', 'epoch', 16)[0]
                 for row in range(0, 16, batch_size)]
        assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(get_batch(data, 'train', 16, 32, 1337, 10, 0, 'cpu', 'epoch', 16)[0], whole)


def test_epoch_order_of_100_billion_tokens_needs_no_table():
    # 97.7M windows of 1024 tokens: a permutation of them would take 780 MB (int64)
    tracemalloc.start()
    offsets = batch_offsets(100 * 10**9, 512, 1024, 1337, 'train', 150_000, 'epoch', 512)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100_000
    assert len(set(offsets)) == 512 and offsets.max() + 1025 <= 100 * 10**9 and (offsets % 1024 == 0).all()


def test_epochs_ended_names_the_batch_that_reads_an_epochs_last_window(tmp_path):
    (tmp_path / 'train.bin').write_bytes(np.zeros(10 * 8 + 1, dtype=np.uint16).tobytes())  # 10 windows of 8
    data = {'train': open(tmp_path / 'train.bin', 'rb')}
    ended = {step: list(epochs_ended(data, 8, 'epoch', 4, step)) for step in range(6)}
    assert ended == {0: [], 1: [], 2: [1], 3: [], 4: [2], 5: []}  # rows 8..11 hold row 9, epoch 1's last
    assert list(epochs_ended(data, 8, 'epoch', 25, 0)) == [1, 2]  # a batch larger than an epoch
    assert list(epochs_ended(data, 8, 'random', 4, 2)) == []


@pytest.mark.slow  # 3 training runs
def test_a_run_resumed_mid_epoch_reads_what_the_whole_run_reads(char_data_root, tmp_path):
    # a train.bin of 20 windows of 32 tokens, 4 rows an iteration (2 micro steps of 2): an epoch every 5 iters
    source = char_data_root / 'data' / 'shakespeare_char'
    data_dir = tmp_path / 'data' / 'twenty'
    data_dir.mkdir(parents=True)
    shutil.copy(source / 'meta.pkl', data_dir)
    shutil.copy(source / 'val.bin', data_dir)
    np.fromfile(source / 'train.bin', dtype=np.uint16)[:20 * 32 + 1].tofile(data_dir / 'train.bin')
    args = ['--dataset=twenty', '--data_order=epoch', '--batch_size=2', '--gradient_accumulation_steps=2',
            '--dropout=0.1', '--max_iters=12', '--eval_interval=6']
    train(tmp_path, tmp_path / 'whole', *args)
    train(tmp_path, tmp_path / 'resumed', *args, '--max_iters=7')  # stops in epoch 2 (iters 5-9)
    train(tmp_path, tmp_path / 'resumed', *args, '--init_from=resume')
    whole, resumed = read_log(tmp_path / 'whole'), read_log(tmp_path / 'resumed')
    assert iter_losses(resumed) == iter_losses(whole) and list(iter_losses(whole)) == list(range(12))
    assert {i: eval_losses(resumed)[i] for i in eval_losses(whole)} == eval_losses(whole)  # and one at iter 7
    a, b = load_checkpoint(tmp_path / 'whole' / 'ckpt.pt'), load_checkpoint(tmp_path / 'resumed' / 'ckpt.pt')
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    ends = [(r['iter'], r['epoch'], r['tokens']) for r in whole if 'epoch' in r]
    assert ends == [(4, 1, 5 * 4 * 32), (9, 2, 10 * 4 * 32)]
    assert [(r['iter'], r['epoch']) for r in resumed if 'epoch' in r] == [(4, 1), (9, 2)]


# ----------------------------------------------------------------------------- the dataset a run opened

def test_a_run_reads_the_dataset_it_opened_when_a_new_one_moves_in(tmp_path):
    # train.py opens its dataset once (open_dataset): a data script that replaces it meanwhile changes nothing for the run
    text = SHAKESPEARE.read_text(encoding='utf-8')
    for name, part in (('a.txt', text[:20000]), ('b.txt', text[-20000:])):
        (tmp_path / name).write_text(part, encoding='utf-8')
    prepare = lambda name: run_in_process('data/prepare_text.py', '--input', tmp_path / name, '--name', 'd',
                                          '--data_dir', tmp_path, cwd=tmp_path)
    prepare('a.txt')
    data = open_dataset(tmp_path / 'd', 16)
    x = get_batch(data, 'train', 4, 16, 1337, 0)[0]
    vocab = dataset_vocab(tmp_path / 'd', data['meta.pkl'])
    prepare('b.txt')
    assert torch.equal(get_batch(data, 'train', 4, 16, 1337, 0)[0], x)
    assert not torch.equal(get_batch(open_dataset(tmp_path / 'd', 16), 'train', 4, 16, 1337, 0)[0], x)
    assert vocab != dataset_vocab(tmp_path / 'd', open_dataset(tmp_path / 'd', 16)['meta.pkl'])
