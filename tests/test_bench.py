"""bench.py on CPU with a tiny model: training iterations (ms, tokens/s, MFU), a profiler trace, and sampling
with and without the KV cache."""
import re

import pytest
from helpers import run_script, run_in_process


pytestmark = pytest.mark.slow  # every test starts bench.py: a few seconds each

TINY = ("--device=cpu", "--compile=False", "--n_layer=2", "--n_head=2", "--n_embd=32")
TRAIN = (*TINY, "--block_size=32", "--batch_size=4", "--burn_in_iters=2", "--timed_iters=3")


def figure(pattern, stdout):
    match = re.search(pattern, stdout)
    assert match, f"no {pattern!r} in\n{stdout}"
    return float(match.group(1).replace(",", ""))


def test_train_mode_prints_ms_per_iteration_tokens_per_second_and_mfu(tmp_path):
    proc = run_script("bench.py", *TRAIN, cwd=tmp_path, timeout=120)
    assert "data: random tokens (no data/shakespeare_char/train.bin: prepare it for real data)" in proc.stderr
    ms = figure(r"time per iteration: ([\d.]+)ms \(mean of 3, after 2 untimed\)", proc.stdout)
    tokens_per_s = figure(r"tokens/s: ([\d,]+) \(4 x 32 tokens per iteration\)", proc.stdout)
    peak = figure(r"device peak: ([\d.]+) TFLOP/s \(measured: the fastest 2048x2048 float32 matmul\)", proc.stdout)
    mfu = figure(r"MFU: ([\d.]+)%", proc.stdout)
    assert abs(tokens_per_s - 4 * 32 / (ms / 1000)) <= 0.01 * tokens_per_s
    assert peak > 0 and 0 < mfu < 100


def test_train_mode_times_muon_as_train_py_builds_it_and_prints_peak_memory(tmp_path):
    proc = run_script("bench.py", *TRAIN, "--optimizer=muon", cwd=tmp_path, timeout=120)
    assert "Muon for the Blocks' weight matrices (8 tensors, 24,576 parameters, orthogonalised in float32)" in proc.stderr  # a note on the setup
    assert figure(r"time per iteration: ([\d.]+)ms", proc.stdout) > 0
    assert 0.1 < figure(r"peak memory: ([\d.]+) GiB \(the process's resident peak\)", proc.stdout) < 4  # torch: 0.3


def test_train_mode_reads_the_datasets_train_bin_and_vocab(char_data_root):
    proc = run_script("bench.py", *TRAIN, cwd=char_data_root, timeout=120)
    assert ("data: data/shakespeare_char/train.bin, vocab_size = 65 (inside data/shakespeare_char/meta.pkl)"
            in proc.stderr)
    assert "vocab_size=65" in proc.stderr


def test_profile_writes_a_trace(tmp_path):
    proc = run_script("bench.py", *TRAIN, "--profile=True", cwd=tmp_path, timeout=120)
    assert "14/15 loss:" in proc.stderr
    assert len(list((tmp_path / "bench_log").glob("*.pt.trace.json.gz"))) == 1


def test_sample_mode_times_generation_at_batch_1_with_and_without_kv_cache_and_a_batch(tmp_path):
    proc = run_script("bench.py", *TINY, "--mode=sample", "--block_size=64", "--vocab_size=100",
                      "--max_new_tokens=40", "--num_samples=4", cwd=tmp_path, timeout=120)
    assert "16-token prompt, 40 new tokens" in proc.stdout
    cached = figure(r"batch 1 with KV cache: +([\d.]+) tokens/s", proc.stdout)
    uncached = figure(r"batch 1 without KV cache: +([\d.]+) tokens/s", proc.stdout)
    batch = figure(r"batch 4 with KV cache: +([\d.]+) tokens/s", proc.stdout)
    ms_per_step = figure(r"batch 4 with KV cache: .* tokens/s \(([\d.]+) ms per step of 4 tokens\)", proc.stdout)
    assert 4000 / (ms_per_step + 0.05) - 0.1 <= batch <= 4000 / (ms_per_step - 0.05) + 0.1  # each figure rounded
    assert abs(figure(r"speedup of the KV cache: ([\d.]+)x", proc.stdout) - cached / uncached) < 0.1  # rounded to 0.1
    assert abs(figure(r"of a batch of 4 over 4 at batch 1: ([\d.]+)x", proc.stdout) - batch / cached) < 0.1
    assert "same tokens with and without the cache: True" in proc.stdout


def test_unknown_mode_is_a_one_line_error(tmp_path):
    error = run_in_process("bench.py", "--mode=infer", cwd=tmp_path).error
    assert error == "mode='infer' must be one of 'train', 'sample' (in --mode=infer)"


def test_compare_times_nanogpts_setup_in_turns_with_ours(tmp_path):
    proc = run_script("bench.py", *TRAIN, "--compare=True", "--rounds=2", cwd=tmp_path, timeout=120)
    assert "using fused AdamW: True" in proc.stderr and "using fused AdamW: False" in proc.stderr
    nanogpt = figure(r"nanoGPT's setup \(eager, for-each AdamW\): ([\d.]+)ms/iter", proc.stdout)
    ours = figure(r"ours \(eager, fused AdamW\): ([\d.]+)ms/iter", proc.stdout)
    ratio = figure(r"; ([\d.]+)x \(medians of 2 turns of 3 iterations\)", proc.stdout)
    assert abs(ratio - nanogpt / ours) < 0.01 + 0.01 * ratio  # each figure is rounded


def test_compare_is_for_training(tmp_path):
    error = run_in_process("bench.py", "--mode=sample", "--compare=True", cwd=tmp_path).error
    assert error == "profile=True and compare=True time training iterations; use them with --mode=train"


def test_compare_and_profile_do_not_go_together(tmp_path):
    error = run_in_process("bench.py", "--profile=True", "--compare=True", cwd=tmp_path).error
    assert error == "profile=True and compare=True do not go together; pick one"
