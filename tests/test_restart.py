"""A run under `torchrun --max-restarts=N` survives a dead worker: torchrun starts every process again, train.py goes
on from the run's own newest checkpoint (though the command line says init_from=scratch), and the run ends with the
losses and weights of a run that was never interrupted."""

import pytest

from checkpoint import load_checkpoint
from helpers import (assert_same_training_state, eval_losses, iter_losses, read_log, torchrun, torchrun_killed_once,
                     train)

pytestmark = pytest.mark.slow

# dropout: the resumed processes must also get their RNG states back
ARGS = ['--gradient_accumulation_steps=2', '--max_iters=16', '--eval_interval=8', '--checkpoint_interval=4',
        '--dropout=0.1']


def test_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(char_data_root, tmp_path):
    # with Muon, whose run holds both optimizers' state (AdamW's for the embeddings, LayerNorms and biases)
    args = [*ARGS, '--optimizer=muon']
    torchrun(char_data_root, tmp_path / 'whole', *args)

    out_dir = tmp_path / 'restarted'
    records = torchrun_killed_once(char_data_root, out_dir, *args)  # past the checkpoint of iter 8
    restarts = [r for r in records if 'restart' in r]
    # one restart, from the checkpoint of iter 8 or 12 (torchrun's store still held the dead processes' addresses:
    # parallel.init_process_group gives each restart keys of its own)
    assert len(restarts) == 1 and restarts[0]['restart'] == 1 and restarts[0]['iter'] in (8, 12)
    whole = read_log(tmp_path / 'whole')
    assert iter_losses(records) == iter_losses(whole) and eval_losses(records) == eval_losses(whole)
    redone = [r for r in records[records.index(restarts[0]):] if 'loss' in r]
    assert redone and all(r['loss'] == iter_losses(whole)[r['iter']] for r in redone)
    a, b = load_checkpoint(tmp_path / 'whole' / 'ckpt.pt'), load_checkpoint(out_dir / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 16
    assert_same_training_state(a, b)


def test_restart_before_the_first_checkpoint_of_the_run_starts_from_scratch(char_data_root, tmp_path):
    # an earlier run's checkpoint in out_dir is not this run's: a restart must not take it up
    train(char_data_root, tmp_path, '--max_iters=2')
    proc = train(char_data_root, tmp_path, '--max_iters=3',
                 env={'TORCHELASTIC_RESTART_COUNT': '1', 'TORCHELASTIC_RUN_ID': 'another-run'})
    assert "Initializing a new model from scratch" in proc.stderr
    assert [r['iter'] for r in read_log(tmp_path) if 'loss' in r] == [0, 1, 0, 1, 2]


def test_restart_resumes_its_own_checkpoint_though_init_from_is_scratch(char_data_root, tmp_path):
    train(char_data_root, tmp_path, '--max_iters=2', env={'TORCHELASTIC_RUN_ID': 'this-run'})
    proc = train(char_data_root, tmp_path, '--max_iters=3',
                 env={'TORCHELASTIC_RESTART_COUNT': '1', 'TORCHELASTIC_RUN_ID': 'this-run'})
    assert f"Resuming training from {tmp_path / 'ckpt.pt'} (torchrun restart 1)" in proc.stderr
    assert [r['iter'] for r in read_log(tmp_path) if 'loss' in r] == [0, 1, 2]
    assert {'restart': 1, 'iter': 2} in read_log(tmp_path)
