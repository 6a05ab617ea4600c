"""A full disk, a file-size limit and a read-only folder, wherever train.py, export.py and plot.py write: one line
that says what and where, exit code 1, and what was there before stays whole. Real small file systems (tmpfs),
read-only mounts and a real RLIMIT_FSIZE; the data scripts' are in their own tests."""

import os
import resource
import shutil
import subprocess
import sys

import pytest

from checkpoint import load_checkpoint
from helpers import REPO, TINY, assert_user_error, mounted, run_in_process, run_script


def small_disk(path, kilobytes):
    return mounted(path, '-t', 'tmpfs', '-o', f'size={kilobytes}k', 'tmpfs')


def read_only(path):
    return mounted(path, '--bind', '-o', 'ro', path)


def fill(disk):
    """Writes to disk until it is full."""
    with open(disk / 'filler', 'wb') as f:
        try:
            while True:
                f.write(b'\0' * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_earlier_one(char_data_root, tmp_path):
    with small_disk(tmp_path / 'disk', 600) as disk:  # room for one checkpoint of the tiny model (370 kB), not two
        out_dir = disk / 'out'
        proc = run_script('train.py', *TINY, f'--out_dir={out_dir}', '--max_iters=8', '--eval_interval=4',
                          cwd=char_data_root, check=False)  # a process: torch.save's failure reaches the hook
        assert_user_error(proc, f"error: cannot write {out_dir}/ckpt.pt: the disk is full (No space left on device); "
                                f"the checkpoint of iter 4 in {out_dir} is kept\n")
        assert load_checkpoint(str(out_dir / 'ckpt.pt'))['iter_num'] == 4
        assert sorted(os.listdir(out_dir)) == ['.lock', 'ckpt.pt', 'log.jsonl']  # no temporary file left


def test_a_full_disk_at_the_start_is_one_line(char_data_root, tmp_path):
    with small_disk(tmp_path / 'disk', 64) as disk:
        fill(disk)
        error = run_in_process('train.py', *TINY, f'--out_dir={disk / "out"}', cwd=char_data_root).error
    assert error.startswith(f"cannot write {disk / 'out'}") and "the disk is full (No space left on device)" in error


@pytest.mark.slow
def test_a_file_size_limit_while_saving_a_checkpoint_is_one_line(char_data_root, tmp_path):
    limit = 100_000  # the log fits, the 370 kB checkpoint does not; Python ignores SIGXFSZ: writes get EFBIG
    proc = subprocess.run([sys.executable, str(REPO / 'train.py'), *TINY, f'--out_dir={tmp_path}', '--max_iters=2',
                           '--eval_interval=2'], cwd=char_data_root, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_user_error(proc, f"error: cannot write {tmp_path}/ckpt.pt: a file-size limit is reached (File too large); "
                            f"no checkpoint was written\n")
    assert sorted(os.listdir(tmp_path)) == ['.lock', 'log.jsonl']


@pytest.mark.slow  # char_export: transformers
def test_a_full_disk_in_export_keeps_the_earlier_export(char_export, char_data_root, tmp_path):
    out_dir, hf_dir = char_export
    with small_disk(tmp_path / 'disk', 200) as disk:  # the earlier export (125 kB) fits, a second one beside it not
        shutil.copytree(hf_dir, disk / 'hf')
        before = {name: (disk / 'hf' / name).read_bytes() for name in os.listdir(disk / 'hf')}
        error = run_in_process('export.py', f'--out_dir={out_dir}', f'--hf_dir={disk / "hf"}',
                               cwd=char_data_root).error
        assert error == (f"cannot write {disk / 'hf'}: the disk is full (No space left on device); "
                         f"{disk / 'hf'} is as it was")
        assert os.listdir(disk) == ['hf']
        assert {name: (disk / 'hf' / name).read_bytes() for name in os.listdir(disk / 'hf')} == before


@pytest.mark.slow  # char_export: transformers
def test_export_into_a_read_only_folder_is_one_line(char_export, char_data_root, tmp_path):
    out_dir, _ = char_export
    with read_only(tmp_path / 'disk') as disk:
        error = run_in_process('export.py', f'--out_dir={out_dir}', f'--hf_dir={disk / "hf"}',
                               cwd=char_data_root).error
    assert error == f"cannot write {disk / 'hf'}: it is not writable (Read-only file system); nothing was exported"


def test_plot_into_a_read_only_folder_is_one_line(char_run, tmp_path):
    shutil.copy(char_run / 'log.jsonl', tmp_path / 'log.jsonl')
    with read_only(tmp_path) as disk:
        error = run_in_process('plot.py', f'--out_dir={disk}', cwd=disk).error
    assert error == (f"cannot write {disk}/loss.png: it is not writable (Read-only file system); "
                     f"plot into another --out_dir")
