"""The benchmarks in bench/ run, at sizes of seconds, and print their figures: a benchmark that broke would
otherwise be found only when someone needs its numbers. bench.py has its own tests (test_bench.py). Left to their
commands, for the suite's time: bench/prepare_web.py (a dozen pipelines of processes, ~30 s at its smallest) and
bench/memory_fsdp.py (two torchruns)."""

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
