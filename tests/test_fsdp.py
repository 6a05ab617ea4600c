"""train.py --fsdp=True under a real `torchrun --nproc_per_node=2` on CPU (gloo): the initial weights, training and
evaluation of DDP (with any eval_iters, and HellaSwag), a checkpoint in nanoGPT's single-process format, resuming it
with another number of processes, with or without FSDP. The memory each process needs is measured by
bench/memory_fsdp.py."""

import json
import shutil
from contextlib import nullcontext

import numpy as np
import pytest
import tiktoken
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from eval_hellaswag import evaluate_hellaswag, load_examples
from helpers import (HELLASWAG_EXAMPLES, SHAKESPEARE, assert_same_training_state, eval_losses, iter_losses, read_log,
                     run_in_process, samples, torchrun, train)
from model import GPT, GPTConfig

# 2 micro steps in each of 2 processes, and a grad_clip below the gradients' norm (about 1.5), so that both matter;
# 3 evaluation batches: process 0 runs 2, process 1 one and one more that is not counted
ARGS = ['--gradient_accumulation_steps=4', '--grad_clip=0.5', '--max_iters=6', '--eval_interval=3', '--eval_iters=3']

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


def test_fsdp_gives_the_losses_weights_and_evaluations_of_ddp(runs):
    assert_close_runs(runs / 'fsdp', runs / 'ddp')
    fsdp, ddp = eval_losses(read_log(runs / 'fsdp')), eval_losses(read_log(runs / 'ddp'))
    assert list(fsdp) == list(ddp) == [0, 3, 6]
    assert all(abs(a - b) < 1e-5 for i in fsdp for a, b in zip(fsdp[i], ddp[i]))
    assert fsdp[0] == ddp[0]  # the same initial weights: the same sums of the same 3 losses


def test_fsdp_starts_from_the_weights_of_one_process(char_data_root, tmp_path):
    # every process builds the model on the meta device and draws only its rows of each weight. 3 processes cut
    # the 65 rows of the vocabulary and the 32 of n_embd unevenly, as FSDP does; biases make every kind of weight
    # (max_iters=0: the checkpoint holds the initial weights)
    torchrun(char_data_root, tmp_path, '--max_iters=0', '--bias=True', '--eval_iters=1', '--fsdp=True',
             '--gradient_accumulation_steps=3', nproc=3)
    checkpoint = load_checkpoint(tmp_path / 'ckpt.pt')
    assert checkpoint['iter_num'] == 0
    torch.manual_seed(1337)  # as train.py in one process
    single = GPT(GPTConfig(**checkpoint['model_args'])).state_dict()
    assert list(checkpoint['model']) == list(single)
    assert all(torch.equal(checkpoint['model'][k], single[k]) for k in single)


def test_fsdp_scores_hellaswag_as_one_process(tmp_path):
    # a GPT-2 BPE dataset (HellaSwag needs GPT-2's vocabulary), 3 examples: process 1 scores one more, uncounted
    tokens = np.array(tiktoken.get_encoding('gpt2').encode(SHAKESPEARE.read_text()[:50000]), dtype=np.uint16)
    (tmp_path / 'data' / 'bpe').mkdir(parents=True)
    tokens[:10000].tofile(tmp_path / 'data' / 'bpe' / 'train.bin')
    tokens[10000:].tofile(tmp_path / 'data' / 'bpe' / 'val.bin')
    path = tmp_path / 'hellaswag.jsonl'
    path.write_text(''.join(json.dumps(e) + '\n' for e in HELLASWAG_EXAMPLES[:3]))
    torchrun(tmp_path, tmp_path / 'out', '--dataset=bpe', '--fsdp=True', '--gradient_accumulation_steps=2',
             '--max_iters=2', '--eval_interval=2', '--hellaswag=True', f'--hellaswag_file={path}')
    scores = {r['iter']: (r['hellaswag_acc'], r['hellaswag_acc_norm']) for r in read_log(tmp_path / 'out')
              if 'val_loss' in r}
    model = model_from_checkpoint(load_checkpoint(tmp_path / 'out' / 'ckpt.pt'), 'ckpt.pt')  # of iter 2
    one_process = evaluate_hellaswag(model, load_examples(str(path)), 'cpu', nullcontext())
    assert list(scores) == [0, 2] and one_process['n'] == 3
    assert 0 < one_process['acc'] < 1  # 2 of 3: had the extra example been counted, it would read x / 4
    assert scores[2] == (one_process['acc'], one_process['acc_norm'])


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
    proc = run_in_process('sample.py', f'--out_dir={runs / "fsdp"}', '--device=cpu', '--num_samples=1',
                          '--max_new_tokens=20', cwd=char_data_root)
    assert proc.error is None and len(samples(proc.stdout)[0]) >= 20


def test_fsdp_resume_with_the_same_processes_is_exact(runs, char_data_root, tmp_path):
    resumed = resume(char_data_root, runs, tmp_path, 'fsdp_3', 2, '--fsdp=True')
    assert iter_losses(read_log(resumed)) == iter_losses(read_log(runs / 'fsdp'))
    a, b = load_checkpoint(resumed / 'ckpt.pt'), load_checkpoint(runs / 'fsdp' / 'ckpt.pt')
    assert_same_training_state(a, b)


def test_fsdp_checkpoint_resumes_in_one_process(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'fsdp_3', 1), runs / 'fsdp')


def test_fsdp_checkpoint_resumes_under_ddp(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'fsdp_3', 2), runs / 'ddp')


def test_single_process_checkpoint_resumes_under_fsdp(runs, char_data_root, tmp_path):
    assert_close_runs(resume(char_data_root, runs, tmp_path, 'single_3', 2, '--fsdp=True'), runs / 'fsdp')

