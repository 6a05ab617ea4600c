"""A run that is killed, or stopped, and resumed with --init_from=resume is the run that was never interrupted:
the same losses at every iteration and the same final weights, bit for bit; checkpoints survive a kill at any time."""

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint
from helpers import (REPO, TINY, assert_same_training_state, eval_losses, iter_losses, logged_iters, read_log,
                     run_script, train)

# dropout makes the run depend on the RNG state too
ARGS = ['--max_iters=24', '--eval_interval=4', '--dropout=0.1', '--gradient_accumulation_steps=2']


def start(cwd, out_dir, *args):
    return subprocess.Popen([sys.executable, str(REPO / 'train.py'), *TINY, f'--out_dir={out_dir}', *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, condition, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the condition never came true: {proc.communicate()}")
        time.sleep(0.002)


@pytest.mark.slow
def test_kill9_then_resume_gives_bit_identical_losses_and_weights(char_data_root, tmp_path):
    train(char_data_root, tmp_path / 'whole', *ARGS)

    out_dir = tmp_path / 'killed'
    proc = start(char_data_root, out_dir, *ARGS)
    # after iter 13, past the checkpoint of iter 12: iterations from there on are done again
    wait_for(proc, lambda: max(logged_iters(out_dir), default=0) >= 13)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert 13 <= max(logged_iters(out_dir)) < 23  # it did not finish
    assert load_checkpoint(out_dir / 'ckpt.pt')['iter_num'] in (12, 16, 20)
    # two flags: the run goes on with the settings its checkpoint records
    run_script('train.py', f'--out_dir={out_dir}', '--init_from=resume', cwd=char_data_root)

    whole, resumed = read_log(tmp_path / 'whole'), read_log(out_dir)
    assert iter_losses(resumed) == iter_losses(whole)
    assert eval_losses(resumed) == eval_losses(whole)
    # the iterations the killed run did after its checkpoint were done again, and came out the same
    redone = [r for r in resumed if 'loss' in r]
    assert all(r['loss'] == iter_losses(whole)[r['iter']] for r in redone)
    a, b = load_checkpoint(tmp_path / 'whole' / 'ckpt.pt'), load_checkpoint(out_dir / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 24
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert all(torch.equal(a['optimizer']['state'][i]['exp_avg_sq'], b['optimizer']['state'][i]['exp_avg_sq'])
               for i in a['optimizer']['state'])


@pytest.mark.slow
def test_kill_during_checkpoint_write_leaves_a_loadable_checkpoint(char_data_root, tmp_path):
    # a model of 13M parameters: a checkpoint of 150 MB takes a while to write
    args = ['--n_layer=4', '--n_head=4', '--n_embd=512', '--block_size=8', '--batch_size=1', '--eval_interval=1',
            '--always_save_checkpoint=True', '--max_iters=20']
    proc = start(char_data_root, tmp_path, *args)
    while True:  # freeze the run while it writes a checkpoint over an earlier one, then kill it
        wait_for(proc, lambda: (tmp_path / 'ckpt.pt').exists() and list(tmp_path.glob('ckpt.pt.tmp.*')))
        proc.send_signal(signal.SIGSTOP)
        if list(tmp_path.glob('ckpt.pt.tmp.*')):  # still there: the write is unfinished (it ends with a rename)
            break
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    left = list(tmp_path.glob('ckpt.pt.tmp.*'))
    assert len(left) == 1
    iter_num = load_checkpoint(tmp_path / 'ckpt.pt')['iter_num']  # the earlier checkpoint, whole

    proc = train(char_data_root, tmp_path, *args, '--init_from=resume', f'--max_iters={iter_num + 1}')
    assert all(f"removed {path}, a checkpoint whose writer was killed" in proc.stderr for path in left)
    assert not list(tmp_path.glob('ckpt.pt.tmp.*'))
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == iter_num + 1


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_signal_stops_with_checkpoint_and_exit_0(sig, char_data_root, tmp_path):
    out_dir = tmp_path / 'my run'  # the command to go on quotes it for the shell
    proc = start(char_data_root, out_dir, '--max_iters=100000', '--eval_interval=1000')
    wait_for(proc, lambda: max(logged_iters(out_dir), default=0) >= 3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    stop = max(logged_iters(out_dir)) + 1
    assert f"{sig.name}: stopping after this micro step, with a checkpoint (again to stop now)" in stdout
    assert re.search(f"^stopped at iter {stop} by {sig.name} after ", stdout, re.M)
    assert f"\nto go on: python train.py --out_dir={shlex.quote(str(out_dir))} --init_from=resume\n" in stdout
    assert load_checkpoint(out_dir / 'ckpt.pt')['iter_num'] == stop


@pytest.mark.slow
def test_a_stop_within_a_long_iteration_ends_at_once_with_the_state_of_the_iteration_before(char_data_root, tmp_path):
    # an iteration of 1,000 micro steps: a stop drops the micro steps done, and saves the state of the iteration
    # before, bit for bit what a run of that one iteration saves, RNG states (dropout) included: what a resume repeats
    args = ['--eval_interval=1000', '--dropout=0.1', '--gradient_accumulation_steps=1000', '--batch_size=1',
            '--block_size=8']
    train(char_data_root, tmp_path / 'one', *args, '--max_iters=1')
    out_dir = tmp_path / 'stopped'
    proc = start(char_data_root, out_dir, *args, '--max_iters=2')
    wait_for(proc, lambda: 0 in logged_iters(out_dir))  # iteration 1 has begun
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stopped_at = time.time()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    iteration = next(r['dt_ms'] for r in read_log(out_dir) if 'dt_ms' in r) / 1000
    assert time.time() - stopped_at < iteration / 2  # a micro step and a checkpoint, not the rest of the iteration
    assert logged_iters(out_dir) == [0]
    a, b = load_checkpoint(tmp_path / 'one' / 'ckpt.pt'), load_checkpoint(out_dir / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 1
    assert_same_training_state(a, b)
    assert torch.equal(a['rng'][0]['torch'], b['rng'][0]['torch'])


@pytest.mark.slow
def test_a_long_evaluation_says_how_far_it_has_come_and_a_stop_skips_it(char_data_root, char_run, tmp_path):
    shutil.copytree(char_run, tmp_path / 'out')  # iter 3
    proc = start(char_data_root, tmp_path / 'out', '--init_from=resume', '--max_iters=10', '--eval_interval=4',
                 '--eval_iters=1000000')
    for line in proc.stdout:  # 20 s into the evaluation of iter 4 (the tiny model's own takes a few ms)
        if line.startswith("step 4: evaluating"):
            break
    assert re.fullmatch(r"step 4: evaluating the train loss, batch \d+ of 1000000\n", line)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "step 4: the evaluation is skipped, as the run stops (a resumed run evaluates here)\n" in stdout
    assert load_checkpoint(tmp_path / 'out' / 'ckpt.pt')['iter_num'] == 4
    assert 4 not in eval_losses(read_log(tmp_path / 'out'))


@pytest.mark.slow
def test_second_sigint_stops_at_once_without_a_checkpoint(char_data_root, tmp_path):
    # micro steps of seconds (~300 GFLOP each, on one thread): a first SIGINT waits for the micro step to end, a second
    # does not. With micro steps as short as the 0.3 s between the two, the first stop could end the run in between
    proc = start(char_data_root, tmp_path, '--max_iters=100', '--eval_interval=1000', '--n_layer=4', '--n_embd=512',
                 '--block_size=512', '--batch_size=8')
    wait_for(proc, lambda: 0 in logged_iters(tmp_path), timeout=600)  # iteration 1 has just begun
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    assert "SIGINT again: stopping now, without a checkpoint" in stdout
    assert logged_iters(tmp_path) == [0] and not (tmp_path / 'ckpt.pt').exists()
