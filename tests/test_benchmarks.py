"""The benchmarks in bench/ run, at sizes of seconds, and print their figures: a benchmark that broke would
otherwise be found only when someone needs its numbers. bench.py has its own tests (test_bench.py). Left to their
commands, for the suite's time: bench/prepare_web.py (a dozen pipelines of processes, ~30 s at its smallest),
bench/memory_fsdp.py (two torchruns) and bench/compare_bpb.py (six runs of train.py). The benchmarks that take
seconds to minutes here (marker `bench`) are a tier of their own, which .ci/run runs after the main suite, with the
enumeration tier."""

import importlib.util
import re
import subprocess
import sys

import pytest

from helpers import REPO, run_in_process, run_script

# b'x' * n writes every byte, so the pages are resident (a bytearray of zeros could stay unmapped)
ALLOCATE_200MB = "import time; b = b'x' * (200 * 2**20); time.sleep(0.5)"


def bench_memory():
    # bench/memory.py by its path: `import bench` is bench.py
    spec = importlib.util.spec_from_file_location("bench_memory", REPO / "bench" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_sums_a_process_tree_and_follows_one_program_alone():
    memory = bench_memory()
    # a parent holding 150 MB while its child holds 200 MB
    parent = [sys.executable, "-c", "import subprocess, sys; held = b'x' * (150 * 2**20); "
                                    f"subprocess.run([sys.executable, '-c', {ALLOCATE_200MB!r}])"]
    returncode, tree_rss, tree_pss = memory.peak_memory(parent)
    assert returncode == 0 and 350 <= tree_pss <= tree_rss < 500, (tree_pss, tree_rss)  # MB: the two at once
    # in bytes, and not this test process's own peak, which a child shares until its exec (a bug once)
    returncode, peak = memory.wait_peak_rss(subprocess.Popen(parent))
    assert returncode == 0 and 150 * 2**20 <= peak < 200 * 2**20, peak  # the parent's program, not its child
    returncode, peak = memory.wait_peak_rss(subprocess.Popen([sys.executable, "-c", ALLOCATE_200MB]))
    assert returncode == 0 and 200 * 2**20 <= peak < 250 * 2**20, peak


@pytest.mark.slow
@pytest.mark.bench
def test_prepare_text_benchmark_prints_a_row_per_size_and_tokenizer(tmp_path):
    stdout = run_script("bench/prepare_text.py", "--sizes_mb", 1, 2, cwd=tmp_path).stdout
    rows = re.findall(r"^\s+(\d)MB\s+(char|gpt2 \w+)\s+([\d,]+)\s+[\d.]+\s+[\d,]+\s+(\d+)MB\s+(\d+)MB$", stdout, re.M)
    tokenizers = {tokenizer for _, tokenizer, *_ in rows}
    assert {"char", "gpt2 tiktoken"} <= tokenizers and len(rows) == 2 * len(tokenizers), stdout
    tokens = {(size, tokenizer): int(count.replace(",", "")) for size, tokenizer, count, *_ in rows}
    assert tokens["1", "char"] == 2**20 and tokens["2", "char"] == 2**21  # one token per character
    if "gpt2 gigatoken" in tokenizers:  # the same ids, so the same count
        assert tokens["2", "gpt2 gigatoken"] == tokens["2", "gpt2 tiktoken"]


@pytest.mark.slow
@pytest.mark.bench
def test_sample_benchmark_times_both_scripts_in_turns(tmp_path):
    # this repo's sample.py takes nanoGPT's flags and reads nanoGPT's checkpoints, so it can stand in for nanoGPT's
    # checkout here (which needs a network to clone)
    stdout = run_script("bench/sample_vs_nanogpt.py", f"--nanogpt={REPO}", "--rounds=1", "--num_samples=2",
                        "--max_new_tokens=2", cwd=tmp_path).stdout
    assert re.search(r"^round 1: ours [\d.]+ s for 2 samples \([\d.]+ s to start generating\), peak [\d.]+ GB; "
                     r"nanoGPT [\d.]+ s for 2 \([\d.]+ s the second\), so \d+ s for 2, peak [\d.]+ GB; [\d.]+x$",
                     stdout, re.M), stdout


def test_sample_benchmark_refuses_a_folder_that_is_not_nanogpt(tmp_path):
    result = run_in_process("bench/sample_vs_nanogpt.py", f"--nanogpt={tmp_path}", cwd=tmp_path)
    assert result.error.startswith(f"--nanogpt='{tmp_path}' is not a checkout of nanoGPT (no sample.py, model.py, "
                                   f"configurator.py)"), result.error


# a model and runs of seconds: the benchmarks' own sizes take minutes (bench/muon.py) or a GPU (bench/gpu.py)
TINY_RUNS = ("--overrides=--n_layer=1 --n_head=2 --n_embd=16 --block_size=16 --eval_iters=2 --max_iters=20 "
             "--lr_decay_iters=20 --warmup_iters=2")


@pytest.mark.slow
@pytest.mark.bench
def test_muon_benchmark_finds_the_iteration_of_the_target_and_times_whole_runs_in_turns(char_data_root):
    stdout = run_script("bench/muon.py", TINY_RUNS, "--eval_interval=5", "--rounds=1", "--adamw_lrs=(3e-3,)",
                        cwd=char_data_root).stdout
    target = float(re.search(r"^target: val loss ([\d.]+), the AdamW recipe's at its last iteration, 20$", stdout,
                             re.M).group(1))
    rows = dict(re.findall(r"^(AdamW recipe|Muon|AdamW lr 0\.003) +([\d.]+ +(?:\d+|None) +[\d,]*)$", stdout, re.M))
    assert set(rows) == {"AdamW recipe", "Muon", "AdamW lr 0.003"}, stdout
    assert rows["AdamW recipe"].split()[:2] == [f"{target:.4f}", "20"]  # its own final loss, at its last iteration
    assert re.search(r"^round 1: AdamW recipe [\d.]+ s, Muon to iteration \d+ [\d.]+ s: [\d.]+x; CPU [\d.]+ s and "
                     r"[\d.]+ s: [\d.]+x$", stdout, re.M), stdout
    assert re.search(r"^median: Muon reaches the AdamW recipe's final val loss in [\d.]+x its wall time", stdout, re.M)
    assert re.search(r"^an iteration: AdamW [\d.]+ ms, Muon [\d.]+ ms \([\d.]+x; ", stdout, re.M), stdout


def test_newton_schulz_benchmark_times_one_by_one_against_batched_and_finds_them_equal(tmp_path):
    stdout = run_in_process("bench/newton_schulz.py", "--n_layer=2", "--n_embd=16", "--rounds=2", cwd=tmp_path).stdout
    assert re.fullmatch(r"Newton-Schulz of 12 matrices \(2 layers of 16, Q, K and V apart\) in float32 on cpu: one by "
                        r"one [\d.]+ ms, batched by shape [\d.]+ ms \([\d.]+x\); the same results bit for bit: True\n",
                        stdout), stdout


@pytest.mark.slow
@pytest.mark.bench
def test_muon_benchmark_prepares_web_like_text_with_the_data_scripts(tmp_path):
    stdout = run_script("bench/muon.py", "--task=web", "--mb=1", TINY_RUNS, "--eval_interval=5", "--rounds=0",
                        "--adamw_lrs=()", cwd=tmp_path).stdout
    tokens = re.search(r"^AdamW recipe +[\d.]+ +20 +([\d,]+)$", stdout, re.M)
    assert tokens and int(tokens.group(1).replace(",", "")) == 20 * 8 * 16, stdout  # batch_size 8 of WEB, block 16


@pytest.mark.slow
@pytest.mark.bench
def test_gpu_benchmark_prints_one_table_of_every_measurement(tmp_path):
    # on CPU at tiny sizes; this repo's bench.py stands in for nanoGPT's, which needs CUDA
    stdout = run_script("bench/gpu.py", "--small=True", "--steps=4", f"--nanogpt={REPO}", "--device=cpu",
                        cwd=tmp_path).stdout
    table = {what: (ours, nanogpt) for what, ours, nanogpt in
             re.findall(r"^\| (.+?) +\| (.+?) \| (.*?) \|$", stdout, re.M)}
    assert re.fullmatch(r"\d+ skipped in [\d.]+s", table["tests/test_cuda.py"][0]), stdout  # no CUDA here
    for optimizer in ("adamw", "muon"):
        assert float(table[f"training, {optimizer}: ms/iter"][0]) > 0
        assert re.fullmatch(r"[\d.]+ GiB", table[f"training, {optimizer}: peak memory"][0])
    assert float(table["training, adamw: ms/iter"][1]) > 0  # nanoGPT's column, beside AdamW's
    assert re.fullmatch(r"[\d.]+%", table["training, adamw: MFU"][1])
    assert re.fullmatch(r"[\d.]+ \(\d+ s\)", table["4 steps on web-like text: Muon's final val loss"][0])
    assert float(table["sampling, batch 10: tokens/s"][0].replace(",", "")) > 0


@pytest.mark.slow
@pytest.mark.bench
def test_train_bpe_benchmark_prints_a_row_per_trainer(tmp_path):
    trainers = ["rustbpe", "tokenizers"]  # bpeasy is the benchmark's alone: not in requirements.txt
    stdout = run_script("bench/train_bpe.py", "--mb", 1, "--vocab_size", 1024, "--rounds", 1, "--trainers", *trainers,
                        cwd=tmp_path).stdout
    rows = re.findall(r"^\| (\w+) \| [\d.]+ s \| [\d,]+ MB \| (yes|no) \| ([\d.]+) \|$", stdout, re.M)
    assert [name for name, *_ in rows] == trainers and all(same == "yes" for _, same, _ in rows), stdout
    assert all(2 < float(bytes_per_token) < 6 for *_, bytes_per_token in rows)
