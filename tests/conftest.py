"""Shared test setup: the repo on sys.path, offline tiktoken and wandb, and a way to run the scripts for real."""

import functools
import http.server
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # what a user's machine would download, kept beside the repo (see README)
SHAKESPEARE = SHARED / "data" / "tinyshakespeare" / "input.txt"
sys.path.insert(0, str(REPO))
if not SHAKESPEARE.exists():  # no ../shared: the copy that step 2 of the README's quick start downloads
    from fileio import TINY_SHAKESPEARE_URL, download
    SHAKESPEARE = REPO / "data" / "shakespeare_char" / "input.txt"
    if not SHAKESPEARE.exists():
        download(TINY_SHAKESPEARE_URL, str(SHAKESPEARE), f"put tiny Shakespeare at {SHAKESPEARE} for the tests")
if (SHARED / "tiktoken-cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests often run several processes at once on few cores


def run_script(script, *args, cwd=REPO, env=None, check=True, timeout=600):
    """Runs `python REPO/script args...` in cwd; returns the CompletedProcess with text stdout/stderr.
    With check, a non-zero exit fails the test and shows what the script printed."""
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{script} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def char_data_root(tmp_path_factory):
    """A directory holding data/shakespeare_char/{train,val}.bin and meta.pkl made by the real prepare script;
    run train.py with cwd set to it. Read-only for tests: copy it to change it."""
    root = tmp_path_factory.mktemp("char_data")
    run_script("data/shakespeare_char/prepare.py", "--input", SHAKESPEARE,
               f"--out_dir={root / 'data' / 'shakespeare_char'}")
    return root


@contextmanager
def serve_files(directory):
    """A real HTTP server on localhost serving directory; yields its base URL. For the download code paths."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
