"""train.py --fsdp=True under a real `torchrun --nproc_per_node=2` on CPU (gloo): the training of DDP, a checkpoint in
nanoGPT's single-process format, resuming it with another number of processes, with or without FSDP, and the memory
each process needs, against DDP."""

import re
import shutil

import pytest
import torch

from checkpoint import load_checkpoint
from helpers import eval_losses, iter_losses, read_log, run_script, torchrun, train

# 2 micro steps in each of 2 processes, and a grad_clip below the gradients' norm (about 1.5), so that both matter
ARGS = ['--gradient_accumulation_steps=4', '--grad_clip=0.5', '--max_iters=6', '--eval_interval=3']

pytestmark = pytest.mark.slow  # a dozen torchrun runs of a few seconds each


@pytest.fixture(scope="module")
def runs(char_data_root, tmp_path_factory):
    """Whole runs of 6 iterations, and runs stopped at 3 to resume from (the learning rate does not depend on
    max_iters, so 3 then 3 more is 6)."""
    tmp = tmp_path_factory.mktemp("fsdp")
    torchrun(char_data_root, tmp / 'ddp', *ARGS)
    torchrun(char_data_root, tmp / 'fsdp', *ARGS, '--fsdp=True')
    torchrun(char_data_root, tmp / 'fsdp_3', *ARGS, '--fsdp=True', '--max_iters=3')
    train(char_data_root, tmp / 'single_3', *ARGS, '--max_iters=3')
    return tmp


def resume(cwd, runs, tmp_path, name, processes, *args):
    """Resumes a copy of the run `name` (stopped at iter 3) up to iter 6 with 1 or 2 processes; returns its out_dir."""
    out_dir = tmp_path / name
    shutil.copytree(runs / name, out_dir)
    if processes == 1:
        train(cwd, out_dir, *ARGS, '--init_from=resume', *args)
    else:
        torchrun(cwd, out_dir, *ARGS, '--init_from=resume', *args)
    return out_dir


def assert_close_runs(a, b, atol=1e-5):
    losses_a, losses_b = iter_losses(read_log(a)), iter_losses(read_log(b))
    assert list(losses_a) == list(losses_b) == list(range(6))
    assert all(abs(losses_a[i] - losses_b[i]) < atol for i in losses_a)
    weights_a, weights_b = load_checkpoint(a / 'ckpt.pt')['model'], load_checkpoint(b / 'ckpt.pt')['model']
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.allclose(weights_a[k], weights_b[k], rtol=0, atol=atol) for k in weights_a)


def test_fsdp_gives_the_losses_and_weights_of_ddp(runs):
    assert_close_runs(runs / 'fsdp', runs / 'ddp')
    fsdp, ddp = eval_losses(read_log(runs / 'fsdp')), eval_losses(read_log(runs / 'ddp'))
    assert list(fsdp) == list(ddp) == [0, 3, 6]
    assert all(abs(a - b) < 1e-5 for i in fsdp for a, b in zip(fsdp[i], ddp[i]))


def test_compiled_fsdp_gives_the_losses_and_weights_of_compiled_ddp(char_data_root, tmp_path):
    torchrun(char_data_root, tmp_path / 'ddp', *ARGS, '--compile=True')
    torchrun(char_data_root, tmp_path / 'fsdp', *ARGS, '--compile=True', '--fsdp=True')
    assert_close_runs(tmp_path / 'fsdp', tmp_path / 'ddp')


def test_fsdp_float16_steps_through_the_grad_scaler(char_data_root, tmp_path):
    # FSDP computes in float16 (its MixedPrecisionPolicy); the first step's scaled gradients overflow, every process
    # skips it (DTensor gradients: the overflow check covers all shards) and halves the scale, and training goes on
    torchrun(char_data_root, tmp_path, *ARGS, '--fsdp=True', '--dtype=float16')
    checkpoint = load_checkpoint(tmp_path / 'ckpt.pt')
    assert checkpoint['scaler']['scale'] == 2.0 ** 15  # from 2 ** 16
    losses = iter_losses(read_log(tmp_path))
    assert losses[5] < losses[1] - 0.3


def test_fsdp_checkpoint_is_a_single_process_checkpoint(runs):
    # DDP's checkpoint holds process 0's own state dicts: what one process saves
    fsdp, ddp = load_checkpoint(runs / 'fsdp' / 'ckpt.pt'), load_checkpoint(runs / 'ddp' / 'ckpt.pt')
    assert fsdp.keys() == ddp.keys()
    assert list(fsdp['model']) == list(ddp['model'])
    assert all(type(t) is torch.Tensor and t.shape == ddp['model'][k].shape for k, t in fsdp['model'].items())
    tied = fsdp['model']['lm_head.weight'], fsdp['model']['transformer.wte.weight']
    assert tied[0].untyped_storage().data_ptr() == tied[1].untyped_storage().data_ptr()  # saved once, as DDP's
    assert fsdp['optimizer']['param_groups'] == ddp['optimizer']['param_groups']  # numbered 0..n-1 in order
    assert list(fsdp['optimizer']['state']) == list(ddp['optimizer']['state']) == list(range(15))
    assert all(t.shape == ddp['optimizer']['state'][i][k].shape and type(t) is torch.Tensor
               for i, state in fsdp['optimizer']['state'].items() for k, t in state.items())


def test_sample_reads_an_fsdp_checkpoint(runs, char_data_root):
    proc = run_script('sample.py', f'--out_dir={runs / "fsdp"}', '--device=cpu', '--num_samples=1',
                      '--max_new_tokens=20', cwd=char_data_root)
    assert len(proc.stdout.strip()) >= 10


def test_fsdp_resume_with_the_same_processes_is_exact(runs, char_data_root, tmp_path):
    resumed = resume(char_data_root, runs, tmp_path, 'fsdp_3', 2, '--fsdp=True')
    assert iter_losses(read_log(resumed)) == iter_losses(read_log(runs / 'fsdp'))
    a, b = load_checkpoint(resumed / 'ckpt.pt'), load_checkpoint(runs / 'fsdp' / 'ckpt.pt')
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert all(torch.equal(t, b['optimizer']['state'][i][k]) for i, state in a['optimizer']['state'].items()
               for k, t in state.items())


def test_fsdp_checkpoint_resumes_in_one_process(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'fsdp_3', 1), runs / 'fsdp')


def test_fsdp_checkpoint_resumes_under_ddp(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'fsdp_3', 2), runs / 'ddp')


def test_single_process_checkpoint_resumes_under_fsdp(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'single_3', 2, '--fsdp=True'), runs / 'fsdp')


def test_fsdp_needs_equal_evaluation_work_in_every_process(char_data_root, tmp_path):
    proc = torchrun(char_data_root, tmp_path, *ARGS, '--fsdp=True', '--eval_iters=3', check=False)
    assert proc.returncode != 0
    assert "error: fsdp=True needs the processes to run equally many evaluation batches: use an eval_iters that " \
           "is a multiple of 2 (not 3), and --hellaswag=False" in proc.stderr


def test_fsdp_process_needs_at_most_0_6_of_ddp_memory(tmp_path):
    # 43M weights in 6 Blocks, a character vocabulary: weights, gradients and AdamW state are most of the memory.
    # DDP holds 20 bytes a weight (weights, gradients, its gradient buckets, AdamW's two); FSDP on 2 processes half
    # of the 16 without buckets, and one or two Blocks whole while they run. 'above start' leaves out the torch
    # libraries (0.26 GB), which both have.
    proc = run_script('bench_memory.py', '--n_layer=6', '--n_head=12', '--n_embd=768', '--vocab_size=65', cwd=tmp_path)
    ratio = float(re.search(r"^fsdp/ddp training peak: [\d.]+, above start: ([\d.]+)$", proc.stdout, re.M).group(1))
    assert ratio <= 0.6, proc.stdout
