"""On a CUDA GPU: the model in reduced precision and the scripts with autocast, GradScaler and compile.
Skipped on machines without CUDA."""

import json
import shutil

import pytest
import torch

from checkpoint import load_checkpoint
from model import GPT, GPTConfig
from helpers import run_script

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY_RUN = ["--dataset=shakespeare_char", "--device=cuda", "--n_layer=2", "--n_head=2", "--n_embd=64",
            "--block_size=64", "--batch_size=16", "--gradient_accumulation_steps=1", "--max_iters=60",
            "--lr_decay_iters=60", "--warmup_iters=5", "--eval_interval=30", "--eval_iters=5", "--log_interval=10",
            "--learning_rate=3e-3"]


def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, vocab_size=128, n_layer=2, n_head=4, n_embd=64)).cuda().eval()


def training_losses(out_dir):
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_bfloat16_decision_agrees_with_torch_without_emulation():
    import hardware
    assert hardware.cuda_has_bf16('cuda') == torch.cuda.is_bf16_supported(including_emulation=False)
    assert hardware.default_dtype('cuda') == ('bfloat16' if hardware.cuda_has_bf16('cuda') else 'float16')


def test_flash_and_manual_attention_agree_in_bfloat16():
    model = tiny_model()
    idx = torch.randint(0, 128, (4, 64), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        flash, _ = model(idx, targets=idx)
        for block in model.transformer.h:
            block.attn.flash = False
        manual, _ = model(idx, targets=idx)
    assert (flash.float() - manual.float()).abs().max().item() < 0.05


def test_cached_generation_gives_the_uncached_tokens():
    model = tiny_model()
    prompt = torch.randint(0, 128, (2, 8), device="cuda")
    cached = model.generate(prompt, 80, temperature=0)  # past block_size 64
    uncached = model.generate(prompt, 80, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)


def test_greedy_samples_of_a_batch_are_the_single_greedy_sample_and_sampled_ones_differ():
    model = tiny_model()
    prompt = torch.randint(0, 128, (1, 8), device="cuda")
    single = model.generate(prompt, 80, temperature=0)  # past block_size 64
    assert torch.equal(model.generate(prompt, 80, temperature=0, num_samples=10), single.expand(10, -1))
    sampled = model.generate(prompt, 80, temperature=1.0, num_samples=10)
    assert len({tuple(row) for row in sampled[:, 8:].tolist()}) == 10
    with pytest.raises(torch.OutOfMemoryError):  # what sample.py turns into "lower --max_batch_size"
        model.generate(prompt, 80, num_samples=2 ** 40)


@pytest.mark.parametrize("dtype, compile", [("bfloat16", "True"), ("float16", "False")])
def test_training_on_cuda_lowers_the_loss(char_data_root, tmp_path, dtype, compile):
    shutil.copytree(char_data_root / "data", tmp_path / "data")
    run_script("train.py", *TINY_RUN, f"--dtype={dtype}", f"--compile={compile}", "--out_dir=out", cwd=tmp_path)
    losses = training_losses(tmp_path / "out")
    assert losses[-1] < losses[0] - 0.5
    checkpoint = load_checkpoint(tmp_path / "out" / "ckpt.pt")
    assert checkpoint["config"]["dtype"] == dtype
    if dtype == "float16":  # the GradScaler is in use, and its scale is saved for an exact resume
        assert checkpoint["scaler"]["scale"] > 0
    proc = run_script("sample.py", "--out_dir=out", "--device=cuda", "--num_samples=1", "--max_new_tokens=50",
                      f"--dtype={dtype}", cwd=tmp_path)
    assert len(proc.stdout) > 50


def test_killed_run_resumes_on_cuda_with_the_uninterrupted_losses(char_data_root, tmp_path):
    # resume loads the checkpoint to CPU, restores the RNG states from CPU tensors, and the model and optimizer move
    # their state to the GPU; on CUDA, with dropout, the losses still follow the uninterrupted run's
    shutil.copytree(char_data_root / "data", tmp_path / "data")
    args = [*TINY_RUN, "--dtype=float32", "--compile=False", "--dropout=0.1", "--max_iters=20", "--eval_interval=10",
            "--log_interval=1"]
    run_script("train.py", *args, "--out_dir=whole", cwd=tmp_path)
    run_script("train.py", *args, "--out_dir=resumed", "--max_iters=10", cwd=tmp_path)
    run_script("train.py", *args, "--out_dir=resumed", "--init_from=resume", cwd=tmp_path)
    whole, resumed = training_losses(tmp_path / "whole"), training_losses(tmp_path / "resumed")
    assert len(whole) == len(resumed) == 20
    assert resumed[10:] == pytest.approx(whole[10:], rel=1e-4)  # cuBLAS need not be bitwise reproducible
