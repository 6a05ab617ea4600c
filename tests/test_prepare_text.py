"""data/prepare_text.py: your own text (a file, a directory or a glob) to train.bin/val.bin (+ meta.pkl)."""
import importlib.util
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tiktoken
import tokenizer
from errors import UserError
from helpers import REPO, SHAKESPEARE, assert_user_error, children, kill_a_worker, listing, mounted, strace


SCRIPT = REPO / "data" / "prepare_text.py"
EOT = 50256

spec = importlib.util.spec_from_file_location("prepare_text", SCRIPT)
prepare_text = importlib.util.module_from_spec(spec)
sys.modules["prepare_text"] = prepare_text  # so worker processes can unpickle its functions
spec.loader.exec_module(prepare_text)

DOCS = {  # sorted path order is the document order
    "a.txt": "First doc.\nIt has two lines, and a café ☕.\n",
    "b.txt": "Second  doc  with\n\n\nblank lines and   spaces",
    "sub/c.txt": "Third, in a subfolder: 'tis <|endoftext|> as plain text.\n",
}


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode("utf-8"))
    (root / "notes.md").write_text("not a .txt file, so not part of a directory input")
    return root


def command(data_dir, *args):
    """prepare_text on data_dir with args; with tiktoken (quicker to start) unless args name a --bpe or 'auto'."""
    if "--bpe" not in args:
        args += ("--bpe", "tiktoken")
    elif "auto" in args:
        args = tuple(a for a in args if a != "--bpe" and a != "auto")  # the default
    return [sys.executable, str(SCRIPT), "--data_dir", str(data_dir), *map(str, args)]


def run(data_dir, *args, **kwargs):
    return subprocess.run(command(data_dir, *args), capture_output=True, text=True, timeout=120, **kwargs)


def prepare(data_dir, *args):
    result = run(data_dir, *args)
    assert result.returncode == 0, result.stderr
    return result


def tokens(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def gpt2_tokens(texts):
    enc = tiktoken.get_encoding("gpt2")
    return [t for text in texts for t in enc.encode_ordinary(text) + [EOT]]


def split(ids, val_fraction=0.1):
    n_train = int(len(ids) * (1 - val_fraction))
    return ids[:n_train], ids[n_train:]


# ---------------------------------------------------------------------------- results

def test_char_on_shakespeare_matches_shakespeare_char(tmp_path):
    out = prepare(tmp_path, "--input", SHAKESPEARE, "--name", "sc").stdout
    assert "train has 1,003,854 tokens" in out and "val has 111,540 tokens" in out
    assert (tmp_path / "sc" / "train.bin").stat().st_size == 2 * 1_003_854
    assert (tmp_path / "sc" / "val.bin").stat().st_size == 2 * 111_540
    meta = pickle.loads((tmp_path / "sc" / "meta.pkl").read_bytes())
    assert meta["vocab_size"] == 65
    # a command sized for this machine, a CPU: the quick start's model
    assert "train with: python train.py config/train_shakespeare_char_cpu.py --dataset=sc --out_dir=out-sc\n" in out


def test_char_file_tokens_and_meta(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus / "a.txt", "--name", "mine")
    text = DOCS["a.txt"]
    meta = pickle.loads((tmp_path / "mine" / "meta.pkl").read_bytes())
    chars = sorted(set(text))
    assert meta == {"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                    "stoi": {c: i for i, c in enumerate(chars)}}
    train, val = tokens(tmp_path / "mine" / "train.bin"), tokens(tmp_path / "mine" / "val.bin")
    assert (train, val) == split([meta["stoi"][c] for c in text])


def test_char_directory_concatenates_txt_files_in_sorted_order(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine")
    meta = pickle.loads((tmp_path / "mine" / "meta.pkl").read_bytes())
    ids = tokens(tmp_path / "mine" / "train.bin") + tokens(tmp_path / "mine" / "val.bin")
    assert "".join(meta["itos"][i] for i in ids) == "".join(DOCS.values())


def test_gpt2_directory_appends_endoftext_after_each_document(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "gpt2", "--bpe", "auto")
    train, val = tokens(tmp_path / "mine" / "train.bin"), tokens(tmp_path / "mine" / "val.bin")
    ids = gpt2_tokens(DOCS.values())
    assert ids.count(EOT) == 3  # '<|endoftext|>' written in a document is encoded as text, not as 50256
    assert (train, val) == split(ids)
    assert not (tmp_path / "mine" / "meta.pkl").exists()


def test_gpt2_glob_selects_files(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus / "**" / "[bc].txt", "--name", "mine", "--tokenizer", "gpt2")
    ids = tokens(tmp_path / "mine" / "train.bin") + tokens(tmp_path / "mine" / "val.bin")
    assert ids == gpt2_tokens([DOCS["b.txt"], DOCS["sub/c.txt"]])


def test_val_fraction_sets_the_split(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "gpt2", "--val_fraction", "0.25")
    n = len(gpt2_tokens(DOCS.values()))
    assert len(tokens(tmp_path / "mine" / "train.bin")) == int(n * 0.75)
    assert len(tokens(tmp_path / "mine" / "val.bin")) == n - int(n * 0.75)


def test_gpt2_run_removes_meta_left_by_a_char_run(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine")
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "gpt2")
    assert listing(tmp_path / "mine") == ["train.bin", "val.bin"]


def distinct_chars(n):
    # NUL marks a binary file, and surrogates are not text
    return "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000)[:n]


def test_a_char_vocab_of_65536_fits_uint16(tmp_path):
    (tmp_path / "all.txt").write_bytes(distinct_chars(2**16).encode("utf-8"))
    prepare(tmp_path, "--input", tmp_path / "all.txt", "--name", "mine")
    assert pickle.loads((tmp_path / "mine" / "meta.pkl").read_bytes())["vocab_size"] == 65536
    assert max(tokens(tmp_path / "mine" / "val.bin")) == 65535


# ---------------------------------------------------------------------------- streaming

def test_reading_in_pieces_keeps_the_gpt2_encoding(tmp_path):
    # 'a\n\nb' is [64, 198, 198, 65] but 'a\n\n' + 'b' is [64, 628] + [65]: pieces must be cut with care
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000] + " \n\n \t\r\n  ¡Olé!\u3000\u00a0end\n\n"
    (tmp_path / "t.txt").write_bytes(text.encode("utf-8"))
    pieces = list(prepare_text.read_pieces(tmp_path / "t.txt", chunk_bytes=97))
    assert len(pieces) > 100 and [last for _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(p for p, _ in pieces) == text
    enc = tiktoken.get_encoding("gpt2")
    assert [t for p, _ in pieces for t in enc.encode_ordinary(p)] == enc.encode_ordinary(text)


@pytest.mark.parametrize("bpe", ["gigatoken", "tiktoken"])
def test_parallel_gpt2_encoding_keeps_document_order(tmp_path, corpus, bpe):
    pytest.importorskip(bpe)
    files = [str(corpus / name) for name in DOCS]
    gpt2 = tokenizer.ExactBPE(tokenizer.GPT2_VOCAB, fast=bpe == "gigatoken")
    ids = np.concatenate(list(prepare_text.encode_bpe(files, gpt2, 2, chunk_bytes=8)))
    assert ids.tolist() == gpt2_tokens(DOCS.values())


def test_a_character_cut_by_a_block_boundary_is_read_whole(tmp_path):
    (tmp_path / "t.txt").write_bytes("aé☕😀 x".encode("utf-8"))
    assert "".join(p for p, _ in prepare_text.read_pieces(tmp_path / "t.txt", chunk_bytes=1)) == "aé☕😀 x"


# ---------------------------------------------------------------------------- errors

def assert_fails_cleanly(result, data_dir, message):
    assert_user_error(result, message)
    assert not [p for p in data_dir.rglob("*") if ".tmp." in p.name], "temporary files left behind"


@pytest.mark.parametrize("content, args, message, tokenizer", [
    (None, [], "no files match --input", "char"),
    (b"", [], "the input has no text", "char"),
    (b"", [], "the input has no text", "gpt2"),
    (b"good line\n" * 1000 + b"bad \xff byte", [], "is not valid UTF-8 (byte offset 10004)", "gpt2"),
    (b"x", ["--val_fraction", "0.9"], "train would be empty", "char"),
    (b"some text", ["--val_fraction", "1e-18"], "val would be empty", "gpt2"),
], ids=["no files", "no text", "no text gpt2", "invalid utf-8", "train empty", "val empty"])
def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path, content, args, message, tokenizer):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if content is not None:
        (tmp_path / "in.txt").write_bytes(content)
    result = run(data_dir, "--input", tmp_path / "in.txt", "--name", "mine", "--tokenizer", tokenizer, *args)
    assert_fails_cleanly(result, data_dir, message)
    assert not (data_dir / "mine").exists()


@pytest.mark.parametrize("args, message", [
    (["--val_fraction", "0"], "--val_fraction must be between 0 and 1, got 0.0"),
    (["--val_fraction", "1"], "--val_fraction must be between 0 and 1, got 1.0"),
    (["--num_proc", "0"], "--num_proc must be from 1 to 4096, got 0"),
    (["--bpe", "fast"], "--bpe must be one of auto, gigatoken, tiktoken, got fast"),
    (["--tokenizer", "words"], "--tokenizer must be one of char, gpt2, bpe or a dataset's meta.pkl, got words"),
    (["--name", "../elsewhere"], "--name must be a plain folder name, got '../elsewhere'"),
    (["--num_proc", "x"], "argument --num_proc: invalid int value: 'x'; see prepare_text.py --help"),
    (["--colour", "red"], "unrecognized arguments: --colour red; see prepare_text.py --help"),
    (["--name", "a\0b"], "--name holds a NUL character, which no path or name can"),
])
def test_a_bad_option_is_refused_before_any_work(monkeypatch, args, message):
    monkeypatch.setattr(sys, "argv", ["prepare_text.py", "--input", "in.txt", "--name", "mine", *args])
    with pytest.raises(UserError, match=re.escape(message)):
        prepare_text.options()


def test_a_char_vocab_over_65536_fails(tmp_path):
    (tmp_path / "all.txt").write_bytes(distinct_chars(2**16 + 1).encode("utf-8"))
    result = run(tmp_path, "--input", tmp_path / "all.txt", "--name", "mine")
    assert_fails_cleanly(result, tmp_path, "the input has 65,537 distinct characters; char ids are uint16")
    assert not (tmp_path / "mine").exists()


def test_invalid_utf8_names_the_file_and_offset_in_a_later_block(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a" * 10 + "é".encode("utf-8")[:1] + b" rest")  # a lead byte with no continuation
    with pytest.raises(UserError, match=rf"{bad} is not valid UTF-8 \(byte offset 10\)"):
        list(prepare_text.read_pieces(bad, chunk_bytes=4))


def test_a_failed_run_leaves_the_previous_outputs_intact(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine")
    before = {name: (tmp_path / "mine" / name).read_bytes() for name in listing(tmp_path / "mine")}
    (corpus / "zz.txt").write_bytes(b"\xfe")
    assert_fails_cleanly(run(tmp_path, "--input", corpus, "--name", "mine"), tmp_path, "zz.txt is not valid UTF-8")
    assert {name: (tmp_path / "mine" / name).read_bytes() for name in listing(tmp_path / "mine")} == before


def test_a_directory_without_txt_files_suggests_a_glob(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("markdown, not .txt")
    result = run(tmp_path, "--input", tmp_path / "notes", "--name", "mine")
    assert_fails_cleanly(result, tmp_path, f"no .txt files in {tmp_path / 'notes'} (a directory stands for its *.txt")
    assert f"--input '{tmp_path / 'notes' / '**' / '*.md'}'" in result.stderr


def test_an_empty_char_input_fails_before_printing_a_vocab_size(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    result = run(tmp_path, "--input", tmp_path / "empty.txt", "--name", "mine")
    assert_fails_cleanly(result, tmp_path, "the input has no text")
    assert "vocab size" not in result.stdout


def test_a_full_disk_fails_with_one_line_and_writes_nothing(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past 100 kB (EFBIG), as a full disk refuses them (ENOSPC)
    import resource
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), "--data_dir", str(data_dir), "--input", SHAKESPEARE,
                             "--name", "mine"], capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)))
    assert_fails_cleanly(result, data_dir, f"cannot write {data_dir / 'mine'}: a file-size limit is reached (File too large); "
                                           f"the dataset in {data_dir / 'mine'} is as it was")
    assert not (data_dir / "mine").exists()


# ---------------------------------------------------------------------------- offline, without tiktoken's cache

@pytest.mark.parametrize("script, args", [
    pytest.param("data/shakespeare/prepare.py", ["--input", SHAKESPEARE, "--out_dir", "{out}"],
                 marks=pytest.mark.slow),
    ("data/prepare_text.py", ["--input", SHAKESPEARE, "--name", "mine", "--tokenizer", "gpt2", "--data_dir", "{out}"]),
    ("data/fineweb/prepare.py", ["--data_files", SHAKESPEARE, "--out_dir", "{out}"]),
])
def test_without_network_or_bpe_cache_gpt2_scripts_fail_in_one_line_and_write_nothing(tmp_path, script, args):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty_cache").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TIKTOKEN_CACHE_DIR=str(tmp_path / "empty_cache"), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, str(REPO / script), *[str(a).format(out=out) for a in args]],
                            capture_output=True, text=True, timeout=120, env=env)
    assert_user_error(result, "error: cannot download GPT-2's BPE files")
    assert [p.name for p in out.rglob("*")] == []


def test_a_read_only_data_dir_is_one_line(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "in.txt").write_text("some text to prepare\n" * 10)
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", tmp_path / "ro") as data_dir:
        result = run(data_dir, "--input", tmp_path / "in.txt", "--name", "mine")
    assert_fails_cleanly(result, tmp_path / "ro",
                         f"cannot write {data_dir / 'mine'}: it is not writable (Read-only file system)")


# ---------------------------------------------------------------------------- a dead worker, Ctrl-C, SIGTERM

def start_encoding(tmp_path):
    """A gpt2 run on 3.3 MB with two tiktoken workers (a few seconds on 2 cores), once its workers are encoding;
    returns (the process, its arguments, the text)."""
    text = SHAKESPEARE.read_text(encoding="utf-8") * 6  # ~6 tasks of ~1 MB
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    args = ["--input", tmp_path / "big.txt", "--name", "mine", "--tokenizer", "gpt2", "--num_proc", 2,
            "--bpe", "tiktoken"]
    proc = subprocess.Popen(command(tmp_path / "data", *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own process group, as a shell gives a command
    deadline = time.time() + 60
    while not (len(children(proc.pid)) == 2 and any(p.stat().st_size for p in (tmp_path / "data").rglob("*.tmp.*"))):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.01)
    return proc, args, text


@pytest.mark.slow
def test_a_worker_killed_while_it_hands_back_a_result_ends_the_run_in_seconds(tmp_path):
    # a result (~0.5 MB of ids) goes back in more than one write: strace kills the worker at its second, with half
    # the message sent. On one pipe shared by all workers (concurrent.futures), the main process would wait for the
    # rest for ever: seen in 1 of ~20 kills
    proc, _, _ = start_encoding(tmp_path)
    worker = children(proc.pid)[0]
    tracer = subprocess.Popen(['strace', '-qq', '-o', '/dev/null', '-e', 'trace=write', '-e',
                               'inject=write:signal=KILL:when=2', '-p', str(worker)])
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        tracer.kill()
    assert proc.returncode == 1 and stderr.endswith("error: a tokenizer worker process died (killed by the "
                                                    "out-of-memory killer, or by kill -9?); run the same command again\n")
    assert not (tmp_path / "data" / "mine").exists()


@pytest.mark.slow
def test_a_worker_killed_by_kill_9_ends_the_run_in_seconds_and_the_same_command_then_finishes(tmp_path):
    proc, args, text = start_encoding(tmp_path)
    stderr = kill_a_worker(proc)
    assert proc.returncode == 1 and stderr.endswith("\nerror: a tokenizer worker process died (killed by the "
                                                    "out-of-memory killer, or by kill -9?); run the same command again\n")
    assert not (tmp_path / "data" / "mine").exists()
    prepare(tmp_path / "data", *args)
    train, val = tokens(tmp_path / "data" / "mine" / "train.bin"), tokens(tmp_path / "data" / "mine" / "val.bin")
    assert (train, val) == split(gpt2_tokens([text]))


@pytest.mark.slow
@pytest.mark.parametrize("signum, last_line, returncode", [
    (signal.SIGINT, "interrupted", -signal.SIGINT),  # Ctrl-C: the terminal signals the whole process group
    (signal.SIGTERM, "tokenizing with tiktoken", 128 + signal.SIGTERM),  # kill, or a job scheduler: the main process
])  # alone, which says nothing after its notes
def test_ctrl_c_or_sigterm_ends_the_run_without_tracebacks_and_leaves_nothing(tmp_path, signum, last_line, returncode):
    proc, _, _ = start_encoding(tmp_path)
    workers = children(proc.pid)
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
    stderr = proc.communicate(timeout=60)[1]
    assert (stderr.splitlines()[-1], proc.returncode) == (last_line, returncode) and "Traceback" not in stderr
    assert not (tmp_path / "data" / "mine").exists()  # no temporary files, no folder it made
    time.sleep(0.5)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")], "a worker outlived the run"


@pytest.mark.slow
def test_a_second_run_into_the_same_dataset_is_refused_in_one_line_while_the_first_goes_on(tmp_path):
    first, args, _ = start_encoding(tmp_path)
    os.kill(first.pid, signal.SIGSTOP)  # it holds the dataset for as long as the second takes
    try:
        second = run(tmp_path / "data", *args)
    finally:
        os.kill(first.pid, signal.SIGCONT)  # a failure here must not leave the first stopped for ever
    assert_user_error(second, f"{tmp_path / 'data' / 'mine'} is in use by process {first.pid}")
    assert "wait for the other run to end" in second.stderr
    stderr = first.communicate(timeout=120)[1]
    assert first.returncode == 0 and "error" not in stderr  # the first ends as if alone
    assert listing(tmp_path / "data" / "mine") == ["train.bin", "val.bin"]


def test_the_guard_stops_a_wrong_bpe_in_one_line_and_writes_nothing(tmp_path, corpus):
    (corpus / "b.txt").write_text("A PLANTED document.")  # the wrong gigatoken changes its first token
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "shims" / "wrong_gigatoken")}
    result = run(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "gpt2", "--bpe", "gigatoken", env=env)
    assert_fails_cleanly(result, tmp_path, f"gigatoken's ids differ from tiktoken's in {corpus / 'b.txt'} (at token 0 "
                                           f"of 4): gigatoken cannot be trusted on this data; run the same command "
                                           f"with --bpe tiktoken")
    assert not (tmp_path / "mine").exists()


@pytest.mark.slow
def test_temp_files_left_by_a_run_killed_with_kill_9_are_removed_by_the_next(tmp_path):
    proc, args, text = start_encoding(tmp_path)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, as a power cut would
    proc.wait(timeout=60)
    left = [p.name for p in (tmp_path / "data" / "mine").iterdir() if ".tmp." in p.name]
    assert left and all(f".tmp.{proc.pid}@" in name for name in left)
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.time() < deadline:
        time.sleep(0.01)  # gone, so that their temps are seen as stale
    prepare(tmp_path / "data", *args)
    assert listing(tmp_path / "data" / "mine") == ["train.bin", "val.bin"]
    assert tokens(tmp_path / "data" / "mine" / "val.bin") == split(gpt2_tokens([text]))[1]


def test_a_kill_at_the_second_rename_over_an_earlier_dataset_leaves_the_new_dataset_whole(tmp_path, corpus):
    # the reproduction in issue 28: `strace -e inject=rename:signal=KILL:when=2 python data/prepare_text.py`, over an
    # earlier dataset of other text. Renamed one at a time, the three files were then half new, half old
    from dataloader import open_dataset
    prepare(tmp_path / "clean", "--input", corpus, "--name", "m")
    prepare(tmp_path, "--input", corpus / "a.txt", "--name", "m")
    killed = strace(command(tmp_path, "--input", corpus, "--name", "m"), tmp_path, tmp_path / "trace",
                    inject=("rename", 2))
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "m" / ".commit").exists()  # the first rename put the commit record in place
    new = {name: (tmp_path / "clean" / "m" / name).read_bytes() for name in ("train.bin", "val.bin", "meta.pkl")}
    seen = open_dataset(tmp_path / "m", 1)  # as train.py reads it: the new dataset, whole
    with seen["train"], seen["val"], seen["meta.pkl"]:
        assert {"train.bin": seen["train"].read(), "val.bin": seen["val"].read(),
                "meta.pkl": seen["meta.pkl"].read()} == new
    assert "finished the change a killed run had begun" in prepare(tmp_path, "--input", corpus, "--name", "m").stderr
    assert listing(tmp_path / "m") == ["meta.pkl", "train.bin", "val.bin"]
    assert {name: (tmp_path / "m" / name).read_bytes() for name in new} == new


# ---------------------------------------------------------------------------- a BPE trained on the input

def trained_ids(vocab, texts):
    """What the BPE of vocab gives texts as prepare_text writes them: tiktoken's ids with its ranks, each document
    closed by <|endoftext|> (the last id)."""
    enc = tokenizer.bpe_encoding(vocab)
    return [t for text in texts for t in enc.encode_ordinary(text) + [vocab["vocab_size"] - 1]]


def test_bpe_trains_on_the_input_and_keeps_it_in_meta_pkl_and_encodes_each_document_then_endoftext(tmp_path, corpus):
    notes = prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "bpe", "--vocab_size", 300).stderr
    vocab = tokenizer.load_meta(tmp_path / "mine" / "meta.pkl")
    assert vocab["bpe"] == "trained" and vocab["vocab_size"] == 300
    size = sum(len(text.encode("utf-8")) for text in DOCS.values())
    assert f"trained a BPE of 300 tokens on {size:,} bytes of the input's {size:,} (100%)" in notes
    ids = tokens(tmp_path / "mine" / "train.bin") + tokens(tmp_path / "mine" / "val.bin")
    assert ids == trained_ids(vocab, DOCS.values()) and ids.count(299) == 3  # a written <|endoftext|> is text
    assert listing(tmp_path / "mine") == ["meta.pkl", "train.bin", "val.bin"]


@pytest.mark.slow  # two runs in processes on all of Shakespeare
def test_bpe_gives_the_same_files_byte_for_byte_whatever_the_number_of_processes(tmp_path):
    outputs = []
    for num_proc in (1, 2):
        prepare(tmp_path, "--input", SHAKESPEARE, "--name", f"n{num_proc}", "--tokenizer", "bpe", "--vocab_size", 2000,
                "--num_proc", num_proc, "--bpe", "auto")
        outputs.append({name: (tmp_path / f"n{num_proc}" / name).read_bytes() for name in ("meta.pkl", "train.bin",
                                                                                           "val.bin")})
    assert outputs[0] == outputs[1]


def test_bpe_trains_on_an_evenly_spread_sample_of_a_larger_input(tmp_path):
    # three files of ~300 kB: a sample of 200 kB takes pieces of each, in order, and about 200 kB of them
    text = SHAKESPEARE.read_text(encoding="utf-8")
    files = []
    for k in range(3):
        files.append(str(tmp_path / f"{k}.txt"))
        (tmp_path / f"{k}.txt").write_text(text[k * 300_000:(k + 1) * 300_000], encoding="utf-8")
    counts = {"read": 0, "taken": 0}
    taken = list(prepare_text.sample_pieces(files, 200_000, counts))
    assert counts["read"] == 900_000 and 200_000 <= counts["taken"] < 200_000 + 2**16
    assert sum(map(len, taken)) == counts["taken"]  # ASCII: a character a byte
    assert all(any(piece in (tmp_path / f"{k}.txt").read_text() for piece in taken) for k in range(3))


def test_a_datasets_meta_pkl_gives_its_bpe_to_another_input(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "bpe", "--vocab_size", 300)
    (tmp_path / "more.txt").write_text("More text, for finetuning.\n")
    notes = prepare(tmp_path, "--input", tmp_path / "more.txt", "--name", "more", "--tokenizer",
                    tmp_path / "mine" / "meta.pkl").stderr
    assert "trained" not in notes
    assert (tmp_path / "more" / "meta.pkl").read_bytes() == (tmp_path / "mine" / "meta.pkl").read_bytes()
    vocab = tokenizer.load_meta(tmp_path / "mine" / "meta.pkl")
    ids = tokens(tmp_path / "more" / "train.bin") + tokens(tmp_path / "more" / "val.bin")
    assert ids == trained_ids(vocab, ["More text, for finetuning.\n"])


def test_a_meta_pkl_of_characters_gives_no_bpe(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "chars")
    result = run(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", tmp_path / "chars" / "meta.pkl")
    assert_fails_cleanly(result, tmp_path, f"--tokenizer {tmp_path / 'chars' / 'meta.pkl'} holds 34 characters, not a "
                                           f"trained BPE; name the meta.pkl of a dataset prepared with --tokenizer bpe")
    assert not (tmp_path / "mine").exists()


@pytest.mark.parametrize("content, args, message", [
    (b"", ["--vocab_size", 300], "the input has no text"),
    (b"ab ab", ["--vocab_size", 300], "--vocab_size 300 is more than the text can give: it gives at most 259 tokens"),
    ("ASCII as UTF-16".encode("utf-16-le"), [], "in.txt is not text: it holds a NUL byte (byte offset 1)"),
    (b"\x89PNG\r\n\x1a\n", [], "in.txt is not valid UTF-8 (byte offset 0)"),
], ids=["no text", "more tokens than the text gives", "utf-16", "png"])
def test_a_bpe_that_cannot_be_trained_fails_with_one_line_and_writes_nothing(tmp_path, content, args, message):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "in.txt").write_bytes(content)
    result = run(data_dir, "--input", tmp_path / "in.txt", "--name", "mine", "--tokenizer", "bpe", *args)
    assert_fails_cleanly(result, data_dir, message)
    assert not (data_dir / "mine").exists()


@pytest.mark.parametrize("vocab_size", [256, 65537])
def test_a_vocab_size_without_room_for_the_bytes_or_past_uint16_is_refused_before_any_work(monkeypatch, vocab_size):
    monkeypatch.setattr(sys, "argv", ["prepare_text.py", "--input", "in.txt", "--name", "mine", "--tokenizer", "bpe",
                                      "--vocab_size", str(vocab_size)])
    with pytest.raises(UserError, match=re.escape(f"--vocab_size must be from 257 (the 256 bytes and <|endoftext|>) "
                                                  f"to 65,536 (uint16 ids), got {vocab_size}")):
        prepare_text.options()


def test_a_full_disk_while_saving_the_bpe_fails_with_one_line_and_writes_nothing(tmp_path):
    # the BPE's meta.pkl (~20 kB for 2,000 tokens) is the first file written: a 16 kB disk cannot hold it
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=16k", "tmpfs") as disk:
        result = run(disk, "--input", SHAKESPEARE, "--name", "mine", "--tokenizer", "bpe", "--vocab_size", 2000)
        assert_fails_cleanly(result, disk, f"cannot write {disk / 'mine'}: the disk is full (No space left on device); "
                                           f"the dataset in {disk / 'mine'} is as it was")
        assert not (disk / "mine").exists()


def test_a_gpt2_run_removes_the_bpe_left_by_a_bpe_run(tmp_path, corpus):
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "bpe", "--vocab_size", 300)
    prepare(tmp_path, "--input", corpus, "--name", "mine", "--tokenizer", "gpt2")
    assert listing(tmp_path / "mine") == ["train.bin", "val.bin"]


def start_training(tmp_path):
    """A bpe run on 11 MB (tens of seconds of training on 2 cores), once its trainer's process has started."""
    (tmp_path / "big.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8") * 10, encoding="utf-8")
    proc = subprocess.Popen(command(tmp_path / "data", "--input", tmp_path / "big.txt", "--name", "mine", "--tokenizer",
                                    "bpe", "--vocab_size", 8192), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 60
    while not children(proc.pid):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.01)
    return proc


@pytest.mark.slow
def test_ctrl_c_while_the_bpe_trains_ends_the_run_at_once_and_leaves_nothing(tmp_path):
    # rustbpe trains in native code for minutes on a large input, where Ctrl-C would wait: it runs in a child
    proc = start_training(tmp_path)
    trainer = children(proc.pid)[0]
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.time()
    stderr = proc.communicate(timeout=60)[1]
    assert (stderr.splitlines()[-1], proc.returncode) == ("interrupted", -signal.SIGINT) and "Traceback" not in stderr
    assert time.time() - interrupted < 5
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{trainer}") and not (tmp_path / "data" / "mine").exists()


CTRL_C_AT_THE_FORK = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
import corpus
os.register_at_fork(after_in_parent=lambda: os.killpg(0, signal.SIGINT))  # Ctrl-C the instant a child is forked
try:
    {start}
except KeyboardInterrupt:
    print(open(f"/proc/{{os.getpid()}}/task/{{os.getpid()}}/children").read().split())
"""


@pytest.mark.parametrize("start", ["corpus.in_child_process(time.sleep, 60)",
                                   "with corpus.worker_pool(2): time.sleep(60)"])
def test_ctrl_c_the_instant_a_worker_or_trainer_is_forked_leaves_no_process_behind(start):
    # seen once in CI: a KeyboardInterrupt between the fork and the code that ends the child left it running
    result = subprocess.run([sys.executable, "-c", CTRL_C_AT_THE_FORK.format(repo=str(REPO), start=start)],
                            capture_output=True, text=True, timeout=60, start_new_session=True)
    assert (result.stdout, result.returncode) == ("[]\n", 0), result.stderr


@pytest.mark.slow
def test_a_trainer_killed_by_the_out_of_memory_killer_ends_the_run_in_one_line(tmp_path):
    proc = start_training(tmp_path)
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    assert proc.communicate(timeout=60)[1].endswith("\nerror: the BPE trainer's process died (killed by the out-of-memory "
                                               "killer, or by kill -9?); lower --tokenizer_mb, or run the same "
                                               "command again\n")
    assert proc.returncode == 1 and not (tmp_path / "data" / "mine").exists()
