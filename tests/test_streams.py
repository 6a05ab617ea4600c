"""A script whose stdout or stderr cannot be written: a file on a full disk (a real tmpfs, filled) or a pipe whose
reader has gone (`| head`). train.py takes either as a stop, like SIGTERM: it saves its state and ends with one line
(exit code 1); the other scripts end at once, quietly on a closed pipe as Unix tools do (exit code 141, as a shell reports SIGPIPE), in one
line on a full disk. Nothing is lost either way. The whole matrix, every script, is in the enumeration tier."""

import re
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

from checkpoint import load_checkpoint
from helpers import REPO, TINY, iter_losses, mounted, read_log

pytestmark = pytest.mark.slow  # processes with their own streams


@contextmanager
def full_disk(path):
    """A file on a tmpfs that is full: its first write (of a buffer's worth, at a flush) fails with ENOSPC."""
    with mounted(path, '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs') as disk:
        with open(disk / 'filler', 'wb', buffering=0) as f:
            try:
                while True:
                    f.write(b'\0' * 4096)
            except OSError:
                pass
        with open(disk / 'stream', 'w') as stream:
            yield stream


def run_with(script, args, cwd, stream, fault, tmp_path, timeout=300):
    """Runs script with its stream ('stdout' or 'stderr') broken by fault ('full disk' or 'closed pipe'); returns
    (returncode, what the other stream got)."""
    command = [sys.executable, str(REPO / script), *map(str, args)]
    other = tmp_path / 'other'
    with open(other, 'w') as other_file:
        if fault == 'closed pipe':
            proc = subprocess.Popen(command, cwd=cwd, **{stream: subprocess.PIPE},
                                    **{'stderr' if stream == 'stdout' else 'stdout': other_file})
            getattr(proc, stream).close()  # the reader is gone before the first write
            proc.wait(timeout=timeout)
        else:
            with full_disk(tmp_path / 'disk') as broken:
                proc = subprocess.Popen(command, cwd=cwd, **{stream: broken},
                                        **{'stderr' if stream == 'stdout' else 'stdout': other_file})
                proc.wait(timeout=timeout)
    return proc.returncode, other.read_text()


@pytest.mark.parametrize('fault', ['full disk', 'closed pipe'])
def test_train_py_stops_with_a_checkpoint_when_its_log_cannot_be_written(fault, char_data_root, tmp_path):
    out_dir = tmp_path / 'out'
    code, stderr = run_with('train.py', [*TINY, f'--out_dir={out_dir}', '--max_iters=100000', '--eval_interval=5'],
                            char_data_root, 'stdout', fault, tmp_path)
    reason = "No space left on device" if fault == 'full disk' else "Broken pipe"
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.splitlines()[-1]
    assert re.fullmatch(rf"error: stdout cannot be written \({reason}\); stopped at iter (\d+) \(the checkpoint of "
                        rf"iter \1 in {re.escape(str(out_dir))} is kept\): fix it, then go on with python train.py "
                        rf"--out_dir={re.escape(str(out_dir))} --init_from=resume", last), last
    stopped = int(re.search(r"stopped at iter (\d+)", last)[1])
    assert stopped < 10 and load_checkpoint(out_dir / 'ckpt.pt')['iter_num'] == stopped  # at once, whole
    assert max(iter_losses(read_log(out_dir)), default=-1) == stopped - 1  # log.jsonl holds what stdout could not


@pytest.mark.parametrize('fault, code', [('full disk', 1), ('closed pipe', 128 + signal.SIGPIPE)])
def test_train_py_whose_notes_cannot_be_written_ends_before_it_writes_anything(fault, code, char_data_root, tmp_path):
    # the settings are its first notes: it ends there, in one line (which stderr cannot take), or as Unix tools end
    out_dir = tmp_path / 'out'
    assert run_with('train.py', [*TINY, f'--out_dir={out_dir}', '--max_iters=100000', '--eval_interval=5'],
                    char_data_root, 'stderr', fault, tmp_path)[0] == code
    assert not out_dir.exists()


def test_sample_py_piped_to_a_reader_that_leaves_ends_quietly(char_run, char_data_root, tmp_path):
    code, stderr = run_with('sample.py', ['--device=cpu', f'--out_dir={char_run}', '--num_samples=3',
                                          '--max_new_tokens=50'], char_data_root, 'stdout', 'closed pipe', tmp_path)
    assert code == 128 + signal.SIGPIPE  # as a shell reports `yes | head`'s end
    assert "Traceback" not in stderr and "error" not in stderr


def test_sample_py_on_a_full_disk_is_one_line(char_run, char_data_root, tmp_path):
    code, stderr = run_with('sample.py', ['--device=cpu', f'--out_dir={char_run}', '--num_samples=3',
                                          '--max_new_tokens=50'], char_data_root, 'stdout', 'full disk', tmp_path)
    assert code == 1
    assert stderr.splitlines()[-1] == "error: cannot write to stdout: No space left on device"
    assert "Traceback" not in stderr
