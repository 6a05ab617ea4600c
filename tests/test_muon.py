"""--optimizer=muon: torch's Muon for the Blocks' weight matrices, AdamW for the rest (optimizers.py). Here: which
weights each optimizer takes, Muon's step against torch's own, the schedule, float16's GradScaler, the checkpoint
and its refusals, a single process's runs. Under torchrun (DDP, FSDP, restarts) and the model staying a GPT-2:
test_muon_parallel.py."""

import shutil

import pytest
import torch

from checkpoint import load_checkpoint
from helpers import eval_losses, iter_losses, read_log, run_in_process, train_here
from model import GPT, GPTConfig
from optimizers import Muon, block_matrices, configure_optimizers, optimizer_step, set_lr

MUON = ['--optimizer=muon', '--muon_lr=0.02']


def tiny_gpt(**overrides):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=65, bias=True),
                            **overrides}))


def muon_and_adamw(model, dtype='float32', **muon):
    settings = dict(muon_lr=0.02, muon_momentum=0.95, muon_weight_decay=0.0, muon_lr_adjust='original', **muon)
    return configure_optimizers(model, 'muon', 0.1, 1e-3, (0.9, 0.95), 'cpu', dtype, **settings)


def backward(model, seed, scaler=None):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randint(65, (2, 4, 16), generator=g)
    loss = model(x, y)[1]
    (scaler.scale(loss) if scaler else loss).backward()


@pytest.fixture(scope="module")
def muon_run(char_data_root, tmp_path_factory):
    """out_dir of a tiny model trained with Muon for 6 iterations, in this process. Read-only for tests."""
    out_dir = tmp_path_factory.mktemp("muon_run") / "out"
    train_here(char_data_root, out_dir, *MUON, '--max_iters=6', '--eval_interval=3')
    return out_dir


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = tiny_gpt()
    adamw, muon = muon_and_adamw(model)
    name = {id(p): n for n, p in model.named_parameters()}
    qkv, rest = ([name[id(p)] for p in group['params']] for group in muon.param_groups)
    assert qkv == ['transformer.h.0.attn.c_attn.weight', 'transformer.h.1.attn.c_attn.weight']
    assert rest == [f'transformer.h.{i}.{w}' for i in range(2)
                    for w in ('attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')]
    assert muon.param_groups[0]['parts'] == 3 and 'parts' not in muon.param_groups[1]
    decayed, not_decayed = ([name[id(p)] for p in group['params']] for group in adamw.param_groups)
    # the embeddings are matrices too, but not the Blocks': AdamW's, decayed as nanoGPT decays them
    assert decayed == ['transformer.wte.weight', 'transformer.wpe.weight']  # wte is lm_head's weight (tied)
    assert adamw.param_groups[0]['weight_decay'] == 0.1 and adamw.param_groups[1]['weight_decay'] == 0.0
    assert all(n.endswith(('bias', 'ln_1.weight', 'ln_2.weight', 'ln_f.weight')) for n in not_decayed)
    assert sorted(decayed + not_decayed + [name[id(p)] for p in block_matrices(model)]) == sorted(name.values())


def test_adamw_is_nanogpts_optimizer():
    model = tiny_gpt()
    [adamw] = configure_optimizers(model, 'adamw', 0.1, 1e-3, (0.9, 0.95), 'cpu', 'float32', 0.02, 0.95, 0.0,
                                   'original')
    assert adamw.state_dict() == model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu').state_dict()


@pytest.mark.parametrize('adjust', ['original', 'match_rms_adamw'])
def test_muon_steps_as_torchs_muon_bit_for_bit(adjust):
    # orthogonalising in bfloat16, as torch's always does, on one process: our step is torch's step
    ours, torchs = tiny_gpt(), tiny_gpt()
    settings = dict(lr=0.02, momentum=0.95, weight_decay=0.1, adjust_lr_fn=adjust)
    muon = Muon(block_matrices(ours), orthogonalise_in=torch.bfloat16, **settings)
    reference = torch.optim.Muon(block_matrices(torchs), **settings)
    for step in range(3):
        for model, optimizer in ((ours, muon), (torchs, reference)):
            backward(model, step)
            optimizer.step()
            optimizer.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(block_matrices(ours), block_matrices(torchs)))
    assert not torch.equal(block_matrices(ours)[0], block_matrices(tiny_gpt())[0])


def test_q_k_and_v_are_orthogonalised_as_three_matrices():
    # c_attn's rows are Q, K and V: its update is torch's Muon's for three matrices of their shape, lr included
    model = tiny_gpt()
    backward(model, 0)
    c_attn = model.transformer.h[0].attn.c_attn.weight
    q_k_v = [torch.nn.Parameter(w.detach().clone()) for w in c_attn.chunk(3)]
    for part, grad in zip(q_k_v, c_attn.grad.chunk(3)):
        part.grad = grad.clone()
    settings = dict(lr=0.02, momentum=0.95, weight_decay=0.1)
    Muon([{'params': [c_attn], 'parts': 3}], orthogonalise_in=torch.bfloat16, **settings).step()
    torch.optim.Muon(q_k_v, **settings).step()
    assert torch.equal(c_attn, torch.cat(q_k_v))


@pytest.mark.parametrize('dtype, orthogonalised_in', [('float32', torch.float32), ('bfloat16', torch.bfloat16),
                                                      ('float16', torch.float32)])
def test_muon_orthogonalises_in_bfloat16_only_where_the_run_computes_in_it(dtype, orthogonalised_in):
    assert muon_and_adamw(tiny_gpt(), dtype)[1].orthogonalise_in == orthogonalised_in


def test_the_schedule_scales_both_learning_rates_alike():
    adamw, muon = optimizers = muon_and_adamw(tiny_gpt())
    set_lr(optimizers, 2.5e-4, 1e-3)  # a quarter of learning_rate, somewhere in the warmup or the decay
    assert [g['lr'] for g in adamw.param_groups] == [2.5e-4, 2.5e-4]
    assert [g['lr'] for g in muon.param_groups] == [0.02 * 0.25] * 2


def test_float16_overflow_in_either_optimizers_gradients_skips_both_steps():
    # an inf in the token embedding's gradient (AdamW's) only: a GradScaler alone would still step Muon (with
    # clipping, on gradients zeroed by an infinite norm)
    model = tiny_gpt()
    optimizers = muon_and_adamw(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    backward(model, 0, scaler)
    model.transformer.wte.weight.grad[3, 5] = float('inf')
    optimizer_step(optimizers, scaler, model.parameters(), grad_clip=1.0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert not optimizers[0].state and not optimizers[1].state
    assert scaler.get_scale() == 2.0 ** 15
    backward(model, 1, scaler)  # a finite one: both step
    optimizer_step(optimizers, scaler, model.parameters(), grad_clip=1.0)
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_muon_run_trains_and_saves_both_optimizers_states(muon_run):
    checkpoint = load_checkpoint(muon_run / 'ckpt.pt')
    assert checkpoint['config']['optimizer'] == 'muon'
    # the Blocks' 8 matrices in Muon's, the embeddings and LayerNorms (bias=False) in AdamW's, as nanoGPT keeps it
    assert list(checkpoint['muon']['state']) == list(range(8))
    assert all(set(s) == {'momentum_buffer'} for s in checkpoint['muon']['state'].values())
    assert list(checkpoint['optimizer']['state']) == list(range(7))
    evals = eval_losses(read_log(muon_run))
    assert evals[6][1] < evals[0][1] - 0.3


def test_resume_keeps_the_settings_of_this_run(muon_run, char_data_root, tmp_path):
    # a state dict brings back the optimizer's settings it was saved with; the ones given now win
    shutil.copytree(muon_run, tmp_path, dirs_exist_ok=True)
    train_here(char_data_root, tmp_path, *MUON, '--init_from=resume', '--max_iters=7', '--muon_momentum=0.9',
               '--muon_weight_decay=0.01', '--muon_lr_adjust=match_rms_adamw')
    group = load_checkpoint(tmp_path / 'ckpt.pt')['muon']['param_groups'][0]
    assert (group['momentum'], group['weight_decay'], group['adjust_lr_fn']) == (0.9, 0.01, 'match_rms_adamw')


def test_resume_goes_on_as_the_run_that_was_never_stopped(muon_run, char_data_root, tmp_path):
    train_here(char_data_root, tmp_path, *MUON, '--max_iters=3', '--eval_interval=3')
    train_here(char_data_root, tmp_path, *MUON, '--max_iters=6', '--eval_interval=3', '--init_from=resume')
    assert iter_losses(read_log(tmp_path)) == iter_losses(read_log(muon_run))
    a, b = load_checkpoint(tmp_path / 'ckpt.pt'), load_checkpoint(muon_run / 'ckpt.pt')
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert all(torch.equal(a['muon']['state'][i]['momentum_buffer'], b['muon']['state'][i]['momentum_buffer'])
               for i in range(8))


@pytest.mark.parametrize('trained, resumed', [('adamw', 'muon'), ('muon', 'adamw')])
def test_resume_with_the_other_optimizer_is_refused(trained, resumed, char_run, muon_run, char_data_root):
    out_dir = {'adamw': char_run, 'muon': muon_run}[trained]
    result = run_in_process('train.py', f'--out_dir={out_dir}', '--init_from=resume', f'--optimizer={resumed}',
                            '--device=cpu', cwd=char_data_root)
    assert result.error == (f"{out_dir / 'ckpt.pt'} was trained with optimizer={trained!r}; its optimizer state "
                            f"does not carry over to optimizer={resumed!r}: resume with --optimizer={trained}")


def test_a_torch_without_muon_is_refused_in_one_line(char_data_root, tmp_path, monkeypatch):
    monkeypatch.delattr(torch.optim, 'Muon')  # as torch before 2.9
    result = run_in_process('train.py', '--optimizer=muon', '--device=cpu', f'--out_dir={tmp_path}',
                            cwd=char_data_root)
    assert result.error == (f"optimizer='muon' needs torch.optim.Muon, which came with torch 2.9 (this is torch "
                            f"{torch.__version__}): pip install 'torch>=2.9', or use --optimizer=adamw")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(char_data_root, tmp_path):
    # 2 micro steps of 4 rows are the batch of 8 rows (the same rows: dataloader), clipped as a whole (the
    # gradient's norm is above 0.5); only the order of the sums differs
    args = [*MUON, '--max_iters=4', '--eval_interval=4', '--grad_clip=0.5']
    train_here(char_data_root, tmp_path / 'whole', *args, '--batch_size=8')
    train_here(char_data_root, tmp_path / 'accumulated', *args, '--batch_size=4', '--gradient_accumulation_steps=2')
    whole, accumulated = (iter_losses(read_log(tmp_path / run)) for run in ('whole', 'accumulated'))
    assert list(whole) == list(accumulated) == [0, 1, 2, 3]
    assert all(abs(whole[i] - accumulated[i]) < 1e-5 for i in whole)
    a, b = (load_checkpoint(tmp_path / run / 'ckpt.pt')['model'] for run in ('whole', 'accumulated'))
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)


@pytest.mark.slow  # float16 matmuls on a CPU: seconds
def test_float16_steps_on_unscaled_gradients(muon_run, char_data_root, tmp_path):
    # the GradScaler multiplies the loss by 2 ** 16; Muon's momentum must hold the gradients unscaled, as float32's
    train_here(char_data_root, tmp_path, *MUON, '--dtype=float16', '--max_iters=6', '--eval_interval=3')
    half, full = load_checkpoint(tmp_path / 'ckpt.pt'), load_checkpoint(muon_run / 'ckpt.pt')
    assert half['scaler']['scale'] == 2.0 ** 16
    for i in range(8):
        a, b = half['muon']['state'][i]['momentum_buffer'], full['muon']['state'][i]['momentum_buffer']
        assert (a - b).norm() < 0.05 * b.norm()
    half_losses, full_losses = iter_losses(read_log(tmp_path)), iter_losses(read_log(muon_run))
    assert all(abs(half_losses[i] - full_losses[i]) < 0.01 for i in range(6))
