"""train.py under a real `torchrun --standalone --nproc_per_node=2` on CPU (gloo): the same training as one process
with the same global batch, the check that the processes' weights stay equal, a graceful stop of all processes
together, and a stuck process that the others give up on after dist_timeout."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from checkpoint import load_checkpoint
from helpers import (REPO, TINY, eval_losses, iter_losses, rank_pids, read_log, run_in_process, torchrun,
                     torchrun_command, train)

pytestmark = pytest.mark.slow  # torchrun runs: several processes of a few seconds each
# the same global batch of 2 x 4 rows: 2 micro-steps of one process, or 1 micro-step in each of 2 processes
ARGS = ['--gradient_accumulation_steps=2', '--max_iters=6', '--eval_interval=3']


@pytest.fixture(scope="module")
def runs(char_data_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ddp = torchrun(char_data_root, tmp / 'ddp', *ARGS)
    train(char_data_root, tmp / 'single', *ARGS)
    return tmp / 'ddp', tmp / 'single', ddp


def test_two_processes_give_the_loss_of_one_process(runs):
    ddp_dir, single_dir, _ = runs
    ddp, single = iter_losses(read_log(ddp_dir)), iter_losses(read_log(single_dir))
    assert list(ddp) == list(single) == list(range(6))
    # the same numbers, summed in another order
    assert all(abs(ddp[i] - single[i]) < 1e-5 for i in ddp)
    ddp_evals, single_evals = eval_losses(read_log(ddp_dir)), eval_losses(read_log(single_dir))
    assert list(ddp_evals) == list(single_evals) == [0, 3, 6]
    assert all(abs(a - b) < 1e-5 for i in ddp_evals for a, b in zip(ddp_evals[i], single_evals[i]))


def test_two_processes_give_the_bits_per_byte_of_one_process(runs):
    # each process scores its share of the eval batches: their nats and bytes are summed over the processes
    ddp_dir, single_dir, _ = runs
    ddp, single = ({r['iter']: (r['train_bpb'], r['val_bpb']) for r in read_log(d) if 'val_bpb' in r}
                   for d in (ddp_dir, single_dir))
    assert list(ddp) == list(single) == [0, 3, 6]
    assert all(abs(a - b) < 1e-5 for i in ddp for a, b in zip(ddp[i], single[i]))


def test_reported_loss_is_the_mean_over_all_micro_steps(runs, char_data_root, tmp_path):
    # the single process of the fixture took 2 micro-batches of 4 rows: the same 8 rows as 1 batch of 8
    _, single_dir, _ = runs
    train(char_data_root, tmp_path, '--max_iters=1', '--batch_size=8')
    assert iter_losses(read_log(single_dir))[0] == pytest.approx(iter_losses(read_log(tmp_path))[0], abs=1e-6)


def test_two_processes_give_the_weights_of_one_process(runs):
    ddp_dir, single_dir, _ = runs
    ddp, single = load_checkpoint(ddp_dir / 'ckpt.pt'), load_checkpoint(single_dir / 'ckpt.pt')
    assert ddp['iter_num'] == single['iter_num'] == 6
    assert all(torch.allclose(ddp['model'][k], single['model'][k], atol=1e-5) for k in single['model'])


def test_processes_keep_identical_weights(runs):
    # every checkpoint compares all weights across the processes and fails the run if any differs
    _, _, proc = runs
    assert proc.stdout.count("weights identical on all 2 processes") == 2  # at iters 3 and 6


@pytest.mark.slow  # a torchrun of its own
def test_weight_check_finds_one_element_that_differs_by_one_float32_step():
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           str(REPO / 'tests' / 'differing_weights.py'), str(REPO)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: the weights differ between the 2 processes: transformer.h.1.mlp.c_fc.weight\n" \
            in proc.stdout
        # checksums, not copies: a copy of the layer would take 256 MB
        extra_mb = re.search(rf"^rank {rank}: the check of 256 MB of weights took (\d+) MB more$", proc.stdout, re.M)[1]
        assert int(extra_mb) < 16


def test_checkpoint_holds_each_process_rng_state(runs):
    ddp_dir, _, _ = runs
    rngs = load_checkpoint(ddp_dir / 'ckpt.pt')['rng']
    assert len(rngs) == 2
    assert not torch.equal(rngs[0]['torch'], rngs[1]['torch'])  # seeded 1337 and 1338, for dropout


def test_nccl_falls_back_to_gloo_on_cpu_with_a_message(runs):
    _, _, proc = runs
    assert "nccl needs CUDA devices; using the gloo backend for device=cpu" in proc.stderr


# -----------------------------------------------------------------------------
# graceful stop

def start_and_wait_for_iter(cwd, out_dir, iteration, *args, timeout=120):
    """Starts a long torchrun training; returns it once log.jsonl has reached the given iteration."""
    proc = subprocess.Popen(torchrun_command(out_dir, '--gradient_accumulation_steps=2', '--max_iters=100000',
                                                     '--eval_interval=1000', *args), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out_dir / 'log.jsonl').exists() and any(r.get('iter', -1) >= iteration and 'loss' in r
                                                     for r in read_log(out_dir)):
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"training did not reach iter {iteration}: {proc.communicate()}")


def test_sigterm_to_one_process_stops_all_within_the_same_micro_step_with_a_checkpoint(char_data_root, tmp_path):
    # iterations of 2 x 300 micro steps: both processes drop the iteration at the same micro step (else one would
    # wait for the other's gradients, or its answer, for ever)
    proc = start_and_wait_for_iter(char_data_root, tmp_path, 1, '--gradient_accumulation_steps=600',
                                   '--batch_size=1', '--block_size=8')
    os.kill(rank_pids(proc.pid)[1], signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-6000:] + stdout[-2000:]  # torchrun: every process exited 0
    last = max(iter_losses(read_log(tmp_path)))
    assert f"saving checkpoint to {tmp_path / 'ckpt.pt'} (stopped by SIGTERM, iter {last + 1}" in stdout
    assert f"stopped at iter {last + 1} by SIGTERM after " in stdout
    assert f"to go on: python train.py --out_dir={tmp_path} --init_from=resume (under the same torchrun)" in stdout
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == last + 1


def test_sigterm_to_torchrun_stops_all_with_a_checkpoint(char_data_root, tmp_path):
    proc = start_and_wait_for_iter(char_data_root, tmp_path, 3)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    stdout, stderr = proc.communicate(timeout=120)
    # torchrun itself reports the signal it got with exit code 1; the training processes stopped cleanly
    last = max(iter_losses(read_log(tmp_path)))
    assert f"saving checkpoint to {tmp_path / 'ckpt.pt'} (stopped by SIGTERM, iter {last + 1}" in stdout
    assert f"stopped at iter {last + 1} by SIGTERM" in stdout
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == last + 1


# -----------------------------------------------------------------------------
# a process that stops answering

@pytest.mark.slow
@pytest.mark.parametrize('fsdp', [False, True])
def test_a_stuck_process_stops_the_others_after_dist_timeout(fsdp, char_data_root, tmp_path):
    proc = start_and_wait_for_iter(char_data_root, tmp_path, 3, '--dist_timeout=4', f'--fsdp={fsdp}')
    ranks = rank_pids(proc.pid)
    os.kill(ranks[1], signal.SIGSTOP)  # alive but silent, as a process stuck in a driver or on a dead node
    stopped_at = time.time()
    try:
        while Path(f'/proc/{ranks[0]}').exists() and time.time() < stopped_at + 60:
            time.sleep(0.05)
        waited = time.time() - stopped_at
    finally:
        os.kill(ranks[1], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert 4 <= waited < 15  # the timeout, and the rest of the iteration it was in
    assert proc.returncode != 0
    assert re.search(r"^error: process 0 of 2: another process died or did not answer within dist_timeout=4 s "
                     r"\(.*[Tt]imed out.*\); the last checkpoint in " + re.escape(str(tmp_path)) + " is kept: go on "
                     r"with --init_from=resume, or start torchrun with --max-restarts=N to restart by itself$",
                     stderr, re.M), stderr[-3000:]


def test_dist_timeout_below_one_second_is_refused(char_data_root, tmp_path):
    error = run_in_process('train.py', *TINY, f'--out_dir={tmp_path}', '--dist_timeout=0', cwd=char_data_root).error
    assert error == "dist_timeout=0 must be in [1, 1000000000] (in --dist_timeout=0)"


SAME_DATASET = """
import sys
sys.path.insert(0, sys.argv[1])
import torch.distributed as dist
from dataloader import check_same_dataset, open_dataset
from errors import UserError
rank = int(sys.argv[2])
dist.init_process_group('gloo', init_method=f'file://{sys.argv[3]}', rank=rank, world_size=2)
for data_dir in (sys.argv[4], sys.argv[4 + rank]):  # the same dataset, then each its own
    try:
        check_same_dataset(open_dataset(data_dir, 1), data_dir)
        print('the same')
    except UserError as e:
        print(e)
"""


def test_processes_that_opened_different_datasets_stop_in_one_line(char_data_root, tmp_path):
    # as if a data script moved a new dataset in between the starts of two processes of a torchrun
    first = char_data_root / 'data' / 'shakespeare_char'
    second = tmp_path / 'shakespeare_char'
    shutil.copytree(first, second)  # the same bytes, but other files
    procs = [subprocess.Popen([sys.executable, '-c', SAME_DATASET, str(REPO), str(rank), str(tmp_path / 'store'),
                               str(first), str(second)], stdout=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert outputs == [f"the same\nthe processes opened different datasets in {data_dir}: a data script moved a new "
                       f"one in as they started; start the run again\n" for data_dir in (first, second)]
