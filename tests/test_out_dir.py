"""An out_dir belongs to one run at a time; a run never destroys what another run wrote there; a killed run leaves
nothing that blocks or fills the next one. Real processes: a second train.py, kill -9, Ctrl-C."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from checkpoint import load_checkpoint
from helpers import REPO, TINY, listing, logged_iters, read_log, run_in_process, train_here



def start(cwd, out_dir, *args):
    return subprocess.Popen([sys.executable, str(REPO / 'train.py'), *TINY, f'--out_dir={out_dir}', *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_iter(proc, out_dir, iteration, timeout=120):
    deadline = time.time() + timeout
    while max(logged_iters(out_dir), default=-1) < iteration:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)


@pytest.mark.slow  # a train.py process
def test_a_second_run_in_a_busy_out_dir_is_refused_and_the_first_goes_on(char_data_root, tmp_path):
    first = start(char_data_root, tmp_path, '--max_iters=100000', '--eval_interval=5')
    try:
        wait_for_iter(first, tmp_path, 6)  # past its first checkpoint
        second = run_in_process('train.py', *TINY, f'--out_dir={tmp_path}', '--eval_only=True', '--init_from=resume',
                                cwd=char_data_root)
        assert second.error.startswith(f"{tmp_path} is in use by process {first.pid} on {socket.gethostname()} (since ")
        assert second.error.endswith("; wait for it to end or stop it, or pick another --out_dir")
        assert "Resuming" not in second.stderr and "number of parameters" not in second.stderr  # refused at once
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err  # stopped by its signal, with a checkpoint: the second run took nothing
    stopped = int(re.search(r"^stopped at iter (\d+) by SIGTERM", out, re.M)[1])
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == stopped  # (saved then, or just before: at an eval)
    assert len([r for r in read_log(tmp_path) if 'provenance' in r]) == 1  # the second run wrote no record


@pytest.mark.slow  # a train.py process
def test_the_lock_of_a_killed_run_does_not_block_the_next(char_data_root, tmp_path):
    first = start(char_data_root, tmp_path, '--max_iters=100000', '--eval_interval=5')
    wait_for_iter(first, tmp_path, 6)
    first.kill()  # kill -9: the process ends holding the lock
    first.communicate()
    train_here(char_data_root, tmp_path, '--eval_only=True', '--init_from=resume')


def test_startup_removes_only_the_temporary_files_whose_writer_is_gone(char_data_root, char_run, tmp_path):
    shutil.copytree(char_run, tmp_path / 'out')
    ended = subprocess.Popen(['true'])
    ended.wait()  # its pid names no process now
    alive = subprocess.Popen(['sleep', '60'])
    host = socket.gethostname()
    dead = [f'ckpt.pt.tmp.{ended.pid}@{host}', f'last.pt.tmp.{ended.pid}@{host}']
    live = [f'ckpt.pt.tmp.{alive.pid}@{host}', f'ckpt.pt.tmp.{ended.pid}@another-host']
    try:
        for name in dead + live:
            (tmp_path / 'out' / name).write_bytes(b'half a checkpoint')
        stderr = train_here(char_data_root, tmp_path / 'out', '--init_from=resume', '--eval_only=True').stderr
    finally:
        alive.kill()
    for name in dead:
        assert f"removed {tmp_path / 'out' / name}, a checkpoint whose writer was killed" in stderr
    assert sorted(n for n in os.listdir(tmp_path / 'out') if '.tmp.' in n) == sorted(live)


def test_a_new_run_keeps_the_earlier_runs_checkpoint_aside_and_says_where(char_data_root, char_run, tmp_path):
    shutil.copytree(char_run, tmp_path / 'out')
    earlier = (tmp_path / 'out' / 'ckpt.pt').read_bytes()
    stderr = train_here(char_data_root, tmp_path / 'out', '--max_iters=1').stderr  # from scratch, as nanoGPT's README
    kept = next(line for line in stderr.splitlines() if line.startswith("moved the earlier run's checkpoints"))
    folder = kept.split(" to ", 1)[1].split(" rather than")[0]
    assert os.path.dirname(folder) == str(tmp_path / 'out' / 'earlier')
    assert os.listdir(folder) == ['ckpt.pt'] and open(os.path.join(folder, 'ckpt.pt'), 'rb').read() == earlier
    assert load_checkpoint(tmp_path / 'out' / 'ckpt.pt')['iter_num'] == 1
    train_here(char_data_root, tmp_path / 'out', '--max_iters=1')  # and again: the run before is kept beside it
    assert len(os.listdir(tmp_path / 'out' / 'earlier')) == 2


def test_the_earlier_runs_pictures_and_export_go_aside_with_its_checkpoints(char_export, char_data_root, tmp_path):
    # loss.png and hf/ beside the new run's checkpoints would describe the earlier model
    out_dir, hf_dir = char_export
    shutil.copytree(out_dir, tmp_path / 'out')
    shutil.copytree(hf_dir, tmp_path / 'out' / 'hf')
    (tmp_path / 'out' / 'loss.png').write_bytes(b'the earlier run\'s picture')
    (tmp_path / 'out' / 'notes.txt').write_text("the user's own")
    train_here(char_data_root, tmp_path / 'out', '--max_iters=1')
    [folder] = (tmp_path / 'out' / 'earlier').iterdir()
    assert sorted(os.listdir(folder)) == ['ckpt.pt', 'hf', 'loss.png']
    assert sorted(os.listdir(folder / 'hf')) == sorted(os.listdir(hf_dir))
    assert listing(tmp_path / 'out') == ['ckpt.pt', 'earlier', 'log.jsonl', 'notes.txt']


@pytest.mark.slow  # a train.py process
def test_ctrl_c_while_train_py_starts_is_one_line(char_data_root, tmp_path):
    proc = start(char_data_root, tmp_path)
    deadline = time.time() + 60
    while 'libtorch' not in open(f'/proc/{proc.pid}/maps').read():  # in the middle of importing torch
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert err == "interrupted\n" and proc.returncode == -signal.SIGINT  # as the shell reports a Ctrl-C
    assert not os.listdir(tmp_path)
