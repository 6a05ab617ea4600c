"""--optimizer=muon everywhere a run goes, in real processes: DDP and FSDP under a real `torchrun` on CPU (gloo), where
FSDP orthogonalises each matrix whole (parallel.map_whole) and so trains the model DDP trains; exact resume after
kill -9 and after a torchrun restart; torch.compile; and a Muon-trained model that is still a GPT-2 to transformers
and sample.py."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint, open_checkpoint
from helpers import (REPO, TINY, assert_same_training_state, eval_losses, iter_losses, logged_iters, read_log,
                     run_in_process, samples, torchrun, train, train_here)

pytestmark = pytest.mark.slow  # torchrun runs and killed processes: seconds each

MUON = ['--optimizer=muon', '--muon_lr=0.02']
# as tests/test_fsdp.py: 2 micro steps in each of 2 processes, a grad_clip below the gradients' norm, and 3 evaluation
# batches (process 0 runs 2, process 1 one and one more that is not counted)
ARGS = [*MUON, '--gradient_accumulation_steps=4', '--grad_clip=0.5', '--max_iters=6', '--eval_interval=3',
        '--eval_iters=3']


@pytest.fixture(scope="module")
def runs(char_data_root, tmp_path_factory):
    """Runs of 6 iterations under DDP and FSDP, and one of FSDP stopped at 3 to resume from (the learning rates do
    not depend on max_iters). {name: (out_dir, what torchrun printed)}"""
    tmp = tmp_path_factory.mktemp("muon_parallel")
    return {name: (tmp / name, torchrun(char_data_root, tmp / name, *ARGS, *args).stdout)
            for name, args in (('ddp', []), ('fsdp', ['--fsdp=True']), ('fsdp_3', ['--fsdp=True', '--max_iters=3']))}


def assert_close_runs(a, b, atol=1e-5):
    """The same iterations, losses and evaluations, weights and Muon momentum, within atol."""
    losses_a, losses_b = iter_losses(read_log(a)), iter_losses(read_log(b))
    assert list(losses_a) == list(losses_b) == list(range(6))
    assert all(abs(losses_a[i] - losses_b[i]) < atol for i in losses_a)
    evals_a, evals_b = eval_losses(read_log(a)), eval_losses(read_log(b))
    assert list(evals_a) == list(evals_b) == [0, 3, 6]
    assert all(abs(x - y) < atol for i in evals_a for x, y in zip(evals_a[i], evals_b[i]))
    ckpt_a, ckpt_b = load_checkpoint(a / 'ckpt.pt'), load_checkpoint(b / 'ckpt.pt')
    assert ckpt_a['model'].keys() == ckpt_b['model'].keys()
    assert all(torch.allclose(ckpt_a['model'][k], ckpt_b['model'][k], rtol=0, atol=atol) for k in ckpt_a['model'])
    momentum = [(ckpt_a['muon']['state'][i]['momentum_buffer'], ckpt_b['muon']['state'][i]['momentum_buffer'])
                for i in ckpt_b['muon']['state']]
    assert ckpt_a['muon']['state'].keys() == ckpt_b['muon']['state'].keys()
    assert all(torch.allclose(x, y, rtol=0, atol=atol) for x, y in momentum)


def test_fsdp_trains_the_model_ddp_trains(runs):
    assert_close_runs(runs['fsdp'][0], runs['ddp'][0])


def test_ddp_processes_apply_the_same_update(runs):
    # every process orthogonalises the same averaged gradients; each save compares the weights' checksums
    assert runs['ddp'][1].count("weights identical on all 2 processes") == 2  # iters 3 and 6


def test_fsdp_resume_is_exact(runs, char_data_root, tmp_path):
    shutil.copytree(runs['fsdp_3'][0], tmp_path, dirs_exist_ok=True)
    torchrun(char_data_root, tmp_path, *ARGS, '--fsdp=True', '--init_from=resume')
    assert iter_losses(read_log(tmp_path)) == iter_losses(read_log(runs['fsdp'][0]))
    a, b = load_checkpoint(tmp_path / 'ckpt.pt'), load_checkpoint(runs['fsdp'][0] / 'ckpt.pt')
    assert_same_training_state(a, b)


def test_fsdp_checkpoint_resumes_in_one_process(runs, char_data_root, tmp_path):
    # the checkpoint holds Muon's state as one process has it
    shutil.copytree(runs['fsdp_3'][0], tmp_path, dirs_exist_ok=True)
    train(char_data_root, tmp_path, *ARGS, '--init_from=resume')
    assert_close_runs(tmp_path, runs['fsdp'][0])


def test_fsdp_on_5_processes_trains_what_one_process_trains(char_data_root, tmp_path):
    # 5 processes cut the matrices' 96, 32 and 128 rows unevenly (20s and 16, 7s and 4, 26s and 24), and one layer's 4
    # matrices leave one process none to orthogonalise
    args = [*ARGS, '--n_layer=1', '--gradient_accumulation_steps=5']
    torchrun(char_data_root, tmp_path / 'fsdp', *args, '--fsdp=True', nproc=5)
    train(char_data_root, tmp_path / 'single', *args)
    assert_close_runs(tmp_path / 'fsdp', tmp_path / 'single')


def test_compiled_fsdp_trains_the_model_ddp_trains(runs, char_data_root, tmp_path):
    # compile under FSDP for either optimizer: the model compiled is the same whichever optimizer steps it
    torchrun(char_data_root, tmp_path, *ARGS, '--fsdp=True', '--compile=True')
    assert_close_runs(tmp_path, runs['ddp'][0], atol=1e-4)  # compiled kernels round a little differently


def test_killed_run_resumes_from_last_pt_bit_for_bit(char_data_root, tmp_path):
    # ckpt.pt keeps the best model (always_save_checkpoint=False), last.pt the training state of every 4th iteration
    # after it; dropout makes the run depend on the RNG states too
    args = [*MUON, '--max_iters=20', '--eval_interval=8', '--checkpoint_interval=4', '--always_save_checkpoint=False',
            '--dropout=0.1', '--gradient_accumulation_steps=2']
    train(char_data_root, tmp_path / 'whole', *args)
    out_dir = tmp_path / 'killed'
    proc = subprocess.Popen([sys.executable, str(REPO / 'train.py'), *TINY, *args, f'--out_dir={out_dir}'],
                            cwd=char_data_root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while max(logged_iters(out_dir), default=0) < 14:  # past last.pt of iter 12
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert max(logged_iters(out_dir)) < 19 and load_checkpoint(out_dir / 'last.pt')['iter_num'] in (12, 16)
    train(char_data_root, out_dir, *args, '--init_from=resume')
    assert iter_losses(read_log(out_dir)) == iter_losses(read_log(tmp_path / 'whole'))
    a, b = (load_checkpoint(*open_checkpoint(d, newest=True)) for d in (out_dir, tmp_path / "whole"))
    assert a['iter_num'] == b['iter_num'] == 20
    assert_same_training_state(a, b)


def test_a_muon_trained_model_is_still_a_gpt2(char_data_root, tmp_path):
    # biases and LayerNorms, which stay AdamW's, make every kind of weight; transformers computes our logits from
    # the export, and sample.py reads the checkpoint
    from transformers import GPT2LMHeadModel
    train_here(char_data_root, tmp_path / 'out', *MUON, '--bias=True', '--max_iters=4', '--eval_interval=4')
    assert run_in_process('export.py', f'--out_dir={tmp_path / "out"}', f'--hf_dir={tmp_path / "hf"}',
                          cwd=char_data_root).error is None
    path = str(tmp_path / 'out' / 'ckpt.pt')
    ours, theirs = model_from_checkpoint(load_checkpoint(path), path).eval(), GPT2LMHeadModel.from_pretrained(
        tmp_path / 'hf').eval()
    idx = torch.randint(0, 65, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(idx, targets=idx)[0] - theirs(idx).logits).abs().max().item() < 1e-5
    config = json.loads((tmp_path / 'hf' / 'config.json').read_text())
    assert config['architectures'] == ['GPT2LMHeadModel'] and config['n_layer'] == 2
    result = run_in_process('sample.py', f'--out_dir={tmp_path / "out"}', '--device=cpu', '--num_samples=2',
                            '--max_new_tokens=20', cwd=char_data_root)
    assert result.error is None and all(len(s) >= 20 for s in samples(result.stdout))
