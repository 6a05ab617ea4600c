"""Shared test setup: the repo on sys.path, offline tiktoken and wandb, and the fixtures that tests share.
The functions tests share are in helpers.py."""

import os
import signal
import sys
import time

import pytest

from helpers import REPO, SHAKESPEARE, SHARED, run_in_process, run_script, train_here

sys.path.insert(0, str(REPO))
if not SHAKESPEARE.exists():  # no ../shared: download what step 2 of the README's quick start downloads
    from corpus import TINY_SHAKESPEARE_URL
    from fileio import download
    download(TINY_SHAKESPEARE_URL, str(SHAKESPEARE), f"put tiny Shakespeare at {SHAKESPEARE} for the tests")
if (SHARED / "tiktoken-cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests often run several processes at once on few cores
# the tests send SIGINT as a terminal's Ctrl-C does, to scripts that must hear it; a runner started in the background
# (bash's `cmd &`) ignores SIGINT, and every process it starts would inherit that
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# every process that a test starts inherits this mark of the process running the tests (an xdist worker sets its own)
os.environ["NANOGPT_TESTS_OF"] = str(os.getpid())


def marked_processes():
    """{pid: command line} of the live processes that carry this process's mark, but for itself."""
    mark, found = f"NANOGPT_TESTS_OF={os.getpid()}".encode(), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if mark in environ.read().split(b"\0") and int(pid) != os.getpid():
                    found[int(pid)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
        except OSError:
            continue  # gone, or not ours to read
    return found


def pytest_sessionfinish(session):
    """Ends what the tests left running, and names it: a process that outlives the session and holds the runner's
    output (an orphaned worker of a killed script) would keep CI waiting until its time runs out."""
    if session.config.getoption("numprocesses", None) and not hasattr(session.config, "workerinput"):
        return  # xdist's controller runs no test: each worker ends what its own tests left
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()  # the service process that in-process runs started
    deadline = time.time() + 10  # processes that the last test ended go by themselves
    while (left := marked_processes()) and time.time() < deadline:
        time.sleep(0.2)
    for pid, command in left.items():
        print(f"\nconftest: the tests left process {pid} running: {command}; ending it", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def char_data_root(tmp_path_factory):
    """A directory holding data/shakespeare_char/{train,val}.bin and meta.pkl made by the real prepare script;
    run train.py with cwd set to it. Read-only for tests: copy it to change it."""
    root = tmp_path_factory.mktemp("char_data")
    run_script("data/shakespeare_char/prepare.py", "--input", SHAKESPEARE,
               f"--out_dir={root / 'data' / 'shakespeare_char'}")
    return root


@pytest.fixture(scope="session")
def char_run(char_data_root, tmp_path_factory):
    """out_dir of a tiny character model trained by train.py for 3 iterations (helpers.TINY: bias=False, exact
    GELU), with its ckpt.pt and log.jsonl. Read-only for tests: copy it to change it."""
    out_dir = tmp_path_factory.mktemp("char_run") / "out"
    train_here(char_data_root, out_dir, '--max_iters=3', '--eval_interval=3')
    return out_dir


@pytest.fixture(scope="session")
def char_export(char_run, char_data_root, tmp_path_factory):
    """(out_dir, hf_dir): char_run exported by export.py. Read-only for tests."""
    hf_dir = tmp_path_factory.mktemp("char_export") / "hf"
    assert run_in_process("export.py", f"--out_dir={char_run}", f"--hf_dir={hf_dir}", cwd=char_data_root).error is None
    return char_run, hf_dir


@pytest.fixture(scope="session")
def trained_data_root(tmp_path_factory):
    """A directory holding data/shakespeare_bpe: tiny Shakespeare with a BPE of 512 tokens trained on it by
    data/prepare_text.py (--tokenizer bpe), its meta.pkl beside train.bin and val.bin. Read-only for tests."""
    root = tmp_path_factory.mktemp("trained_data")
    run_script("data/prepare_text.py", "--input", SHAKESPEARE, "--name", "shakespeare_bpe", "--tokenizer", "bpe",
               "--vocab_size", 512, f"--data_dir={root / 'data'}")
    return root


@pytest.fixture(scope="session")
def trained_run(trained_data_root, tmp_path_factory):
    """out_dir of a tiny model of the trained BPE (trained_data_root) trained by train.py for 3 iterations, with its
    ckpt.pt and log.jsonl. Read-only for tests: copy it to change it."""
    out_dir = tmp_path_factory.mktemp("trained_run") / "out"
    train_here(trained_data_root, out_dir, '--dataset=shakespeare_bpe', '--max_iters=3', '--eval_interval=3')
    return out_dir

