"""data/shakespeare_char and data/shakespeare prepare scripts, as nanoGPT's (openwebtext: test_web_data.py)."""
import pickle
import resource
import subprocess
import sys

import numpy as np
import pytest
import tiktoken
from helpers import REPO, SHAKESPEARE, assert_user_error, listing, mounted, serve_files


UNREACHABLE = "http://127.0.0.1:9/input.txt"  # the discard port: nothing listens, the connection is refused
CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# the two scripts share corpus.py's argument builder, download and writer: the everyday tier runs shakespeare_char's
# case of each such test, the full suite both


def run(dataset, out_dir, *args, preexec_fn=None):
    """Runs the repo's data/<dataset>/prepare.py with --out_dir, so its outputs land there, not in the repo."""
    return subprocess.run([sys.executable, str(REPO / "data" / dataset / "prepare.py"), f"--out_dir={out_dir}",
                           *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          preexec_fn=preexec_fn)


def tokens(path):
    return np.fromfile(path, dtype=np.uint16)


def contents(directory):
    return {name: (directory / name).read_bytes() for name in listing(directory)}


# ---------------------------------------------------------------------------- shakespeare_char

def test_shakespeare_char_matches_nanogpt(char_data_root):
    # char_data_root is this script's run on tiny Shakespeare (conftest.py); its output is checked here
    out_dir = char_data_root / "data" / "shakespeare_char"
    assert (out_dir / "train.bin").stat().st_size == 2 * 1_003_854
    assert (out_dir / "val.bin").stat().st_size == 2 * 111_540
    meta = pickle.loads((out_dir / "meta.pkl").read_bytes())
    assert meta == {"vocab_size": 65, "itos": dict(enumerate(CHARS)), "stoi": {c: i for i, c in enumerate(CHARS)}}
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert "".join(meta["itos"][i] for i in tokens(out_dir / "train.bin")) == text[:1_003_854]
    assert "".join(meta["itos"][i] for i in tokens(out_dir / "val.bin")) == text[1_003_854:]


def test_shakespeare_char_prints_what_nanogpt_prints_and_replaces_existing_outputs(tmp_path):
    for name in ("train.bin", "val.bin", "meta.pkl"):
        (tmp_path / name).write_bytes(b"stale")
    result = run("shakespeare_char", tmp_path, "--input", SHAKESPEARE)
    assert result.returncode == 0, result.stderr
    # nanoGPT's lines: its notes on stderr, then what was written on stdout, with a command sized for the machine
    assert result.stderr == ("length of dataset in characters: 1,115,394\n"
                             f"all the unique characters: {CHARS}\n"
                             "vocab size: 65\n")
    assert result.stdout.startswith("train has 1,003,854 tokens\nval has 111,540 tokens\n"
                                    f"wrote train.bin, val.bin, meta.pkl to {tmp_path} in ")
    assert result.stdout.endswith(f"\ntrain with: python train.py config/train_shakespeare_char_cpu.py "
                                  f"--dataset={tmp_path.name} --out_dir=out-{tmp_path.name}\n")
    assert listing(tmp_path) == ["meta.pkl", "train.bin", "val.bin"]  # no temporary files
    assert (tmp_path / "train.bin").stat().st_size == 2 * 1_003_854
    assert pickle.loads((tmp_path / "meta.pkl").read_bytes())["vocab_size"] == 65


@pytest.mark.parametrize("dataset", ["shakespeare_char", pytest.param("shakespeare", marks=pytest.mark.slow)])
def test_a_full_disk_leaves_the_earlier_dataset_whole_and_says_so_in_one_line(tmp_path, dataset):
    earlier = tmp_path / "earlier.txt"
    earlier.write_text("A small earlier dataset, with other characters: xyz.\n" * 20)
    out = tmp_path / "out"
    assert run(dataset, out, "--input", earlier).returncode == 0
    before = contents(out)

    # RLIMIT_FSIZE makes the kernel refuse writes past 300 kB (EFBIG), as a full disk refuses them (ENOSPC): the new
    # train.bin cannot be written, its val.bin could be
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    result = run(dataset, out, "--input", SHAKESPEARE, preexec_fn=limit_file_size)
    assert_user_error(result, f"cannot write {out}: a file-size limit is reached (File too large); the dataset in {out} is as it was")
    assert contents(out) == before


@pytest.mark.parametrize("dataset", ["shakespeare_char", pytest.param("shakespeare", marks=pytest.mark.slow)])
def test_a_read_only_out_dir_is_one_line(tmp_path, dataset):
    (tmp_path / "ro").mkdir()
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", tmp_path / "ro") as out:
        result = run(dataset, out, "--input", SHAKESPEARE)
    assert_user_error(result, f"cannot write {out}: it is not writable (Read-only file system)")


# ---------------------------------------------------------------------------- shakespeare (GPT-2 BPE)

def test_shakespeare_bpe_matches_nanogpt(tmp_path):
    out_dir = tmp_path / "out"
    result = run("shakespeare", out_dir, "--input", SHAKESPEARE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("train has 301,966 tokens\nval has 36,059 tokens\n")
    assert (out_dir / "train.bin").stat().st_size == 2 * 301_966
    assert (out_dir / "val.bin").stat().st_size == 2 * 36_059
    enc = tiktoken.get_encoding("gpt2")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert enc.decode(tokens(out_dir / "train.bin")[:4].tolist()) == "First Citizen:\n"
    assert enc.decode(tokens(out_dir / "train.bin").tolist()) == text[:1_003_854]  # the first 90% of characters
    assert enc.decode(tokens(out_dir / "val.bin").tolist()) == text[1_003_854:]
    assert listing(out_dir) == ["train.bin", "val.bin"]


# ---------------------------------------------------------------------------- download

@pytest.mark.parametrize("dataset", ["shakespeare_char", pytest.param("shakespeare", marks=pytest.mark.slow)])
def test_missing_input_is_downloaded_into_out_dir(tmp_path, dataset):
    with serve_files(SHAKESPEARE.parent) as url:
        result = run(dataset, tmp_path, "--url", f"{url}/input.txt")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "input.txt").read_bytes() == SHAKESPEARE.read_bytes()
    assert "train has" in result.stdout
    outputs = ["meta.pkl"] if dataset == "shakespeare_char" else []
    assert listing(tmp_path) == ["input.txt", *outputs, "train.bin", "val.bin"]  # no temp


@pytest.mark.parametrize("dataset", ["shakespeare_char", pytest.param("shakespeare", marks=pytest.mark.slow)])
def test_download_failure_is_one_clear_line(tmp_path, dataset):
    result = run(dataset, tmp_path, "--url", UNREACHABLE)
    assert_user_error(result, f"error: cannot download {UNREACHABLE} ([Errno 111] Connection refused); "
                              f"put the file at {tmp_path / 'input.txt'} or pass --input PATH\n")
    assert list(tmp_path.iterdir()) == []  # no input.txt, partial or whole
