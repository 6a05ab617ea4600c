"""Shared test setup: the repo on sys.path, offline tiktoken and wandb, and the fixtures that tests share.
The functions tests share are in helpers.py."""

import os
import sys

import pytest

from helpers import REPO, SHAKESPEARE, SHARED, run_script

sys.path.insert(0, str(REPO))
if not SHAKESPEARE.exists():  # no ../shared: download what step 2 of the README's quick start downloads
    from fileio import TINY_SHAKESPEARE_URL, download
    download(TINY_SHAKESPEARE_URL, str(SHAKESPEARE), f"put tiny Shakespeare at {SHAKESPEARE} for the tests")
if (SHARED / "tiktoken-cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests often run several processes at once on few cores


@pytest.fixture(scope="session")
def char_data_root(tmp_path_factory):
    """A directory holding data/shakespeare_char/{train,val}.bin and meta.pkl made by the real prepare script;
    run train.py with cwd set to it. Read-only for tests: copy it to change it."""
    root = tmp_path_factory.mktemp("char_data")
    run_script("data/shakespeare_char/prepare.py", "--input", SHAKESPEARE,
               f"--out_dir={root / 'data' / 'shakespeare_char'}")
    return root
