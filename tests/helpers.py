"""What the tests share: where things are, running the repo's scripts for real, and reading what they wrote.
Fixtures live in conftest.py; no test module imports another."""

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # what a user's machine would download, kept beside the repo (see README)
SHAKESPEARE = SHARED / "data" / "tinyshakespeare" / "input.txt"
if not SHAKESPEARE.exists():  # no ../shared: the copy that step 2 of the README's quick start downloads
    SHAKESPEARE = REPO / "data" / "shakespeare_char" / "input.txt"


def run_script(script, *args, cwd=REPO, env=None, check=True, timeout=600):
    """Runs `python REPO/script args...` in cwd; returns the CompletedProcess with text stdout/stderr.
    With check, a non-zero exit fails the test and shows what the script printed."""
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{script} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def assert_user_error(proc, message):
    """A mistake of the user's (or a machine that cannot do what was asked) ends a script with one line on stderr
    that says what is wrong, exit code 1, and no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    assert re.fullmatch(r"error: [^\n]+\n", proc.stderr), proc.stderr
    assert message in proc.stderr, proc.stderr


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


# HTTP(S) through a proxy that refuses every connection: the network is down, quickly
BLOCKED_NETWORK = dict(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="",
                       HF_HUB_OFFLINE="", TRANSFORMERS_OFFLINE="")

# ----------------------------------------------------------------------------- train.py

# a model that trains in milliseconds per iteration; tests add what they need (later --key=value wins)
TINY = ['--dataset=shakespeare_char', '--device=cpu', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=1', '--eval_iters=2',
        '--learning_rate=3e-3', '--warmup_iters=0', '--lr_decay_iters=100', '--min_lr=3e-4']


def train(cwd, out_dir, *args, **kwargs):
    """Runs train.py on TINY with cwd (which holds data/) and out_dir; returns the CompletedProcess."""
    return run_script('train.py', *TINY, f'--out_dir={out_dir}', *args, cwd=cwd, **kwargs)


def torchrun_command(out_dir, *args, nproc=2):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
            str(REPO / 'train.py'), *TINY, f'--out_dir={out_dir}', *args]


def torchrun(cwd, out_dir, *args, check=True, nproc=2):
    """train.py on TINY under a real torchrun of nproc processes on CPU (gloo)."""
    proc = subprocess.run(torchrun_command(out_dir, *args, nproc=nproc), cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 or not check, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_log(out_dir):
    with open(Path(out_dir) / 'log.jsonl') as f:
        return [json.loads(line) for line in f]


def iter_losses(records):
    """{iter: loss} of the training records; a resumed run's records of an iteration replace the earlier ones."""
    return {r['iter']: r['loss'] for r in records if 'loss' in r}


def eval_losses(records):
    return {r['iter']: (r['train_loss'], r['val_loss']) for r in records if 'val_loss' in r}


def logged_iters(out_dir):
    """The iterations in out_dir's log.jsonl so far, while train.py may still be writing it."""
    try:
        return list(iter_losses(read_log(out_dir)))
    except (OSError, ValueError):  # not there yet, or a line half written
        return []


# ----------------------------------------------------------------------------- sample.py

SEPARATOR = "\n---------------\n"

# the lines that can come last before the samples: the tokenizer's, the model's size, the note on a long prompt
LAST_LINES = re.compile(r"(?:meta\.pkl\.\.\.|GPT-2 encodings\.\.\.|saved in [^\n]*\.\.\.|number of parameters: [\d.]+M"
                        r"|using the checkpoint's vocabulary: [^\n]*"
                        r"|\(its block_size\))\n")


def samples(stdout):
    """The samples printed, without the lines before them (config, tokenizer, model, prompt notes)."""
    body = LAST_LINES.split(stdout)[-1]
    assert body.endswith(SEPARATOR)
    return body[:-len(SEPARATOR)].split(SEPARATOR)


# ----------------------------------------------------------------------------- HellaSwag

# the real format: one JSON object per line with these fields; the texts are made up
HELLASWAG_EXAMPLES = [
    {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "A man is standing next to a car covered in snow.",
     "ctx_b": "he", "ctx": "A man is standing next to a car covered in snow. he",
     "split": "val", "split_type": "indomain", "label": 1, "source_id": "activitynet~v_example1",
     "endings": ["eats the snow off the windshield with a spoon.", "drives away.",
                 "sings to the car while the snow melts in the sun.", "scrapes the ice off the windows."]},
    {"ind": 5, "activity_label": "Baking cookies", "ctx_a": "A woman puts a tray of dough into the oven.",
     "ctx_b": "she", "ctx": "A woman puts a tray of dough into the oven. she",
     "split": "val", "split_type": "zeroshot", "label": 1, "source_id": "wikihow~example2",
     "endings": ["throws the oven out of the kitchen window and laughs at the neighbours.", "waits.",
                 "paints the cookies blue before they are baked.", "closes the door and sets a timer."]},
    {"ind": 6, "activity_label": "Playing guitar", "ctx_a": "A boy sits on a chair holding a guitar.",
     "ctx_b": "the boy", "ctx": "A boy sits on a chair holding a guitar. the boy",
     "split": "val", "split_type": "indomain", "label": 0, "source_id": "activitynet~v_example3",
     "endings": ["strums the strings and sings a song.", "eats the guitar.",
                 "turns into a bird and flies away over the trees.", "plays."]},
    {"ind": 7, "activity_label": "Washing dishes", "ctx_a": "Plates are piled up in a sink full of water.",
     "ctx_b": "a man", "ctx": "Plates are piled up in a sink full of water. a man",
     "split": "val", "split_type": "zeroshot", "label": 3, "source_id": "wikihow~example4",
     "endings": ["jumps into the sink.", "reads a newspaper about plates.",
                 "scrubs each plate with a sponge and rinses it.", "leaves."]},
]


# ----------------------------------------------------------------------------- worker processes

def children(pid):
    """The pids of the processes that process pid started (a data script's tokenizer workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def rank_pids(pid):
    """{RANK: pid} of the training processes torchrun started."""
    ranks = {}
    for entry in Path('/proc').iterdir():
        try:
            if entry.name.isdigit() and int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1]) == pid:
                env = dict(v.split('=', 1) for v in (entry / 'environ').read_text().split('\0') if '=' in v)
                ranks[int(env['RANK'])] = int(entry.name)
        except (OSError, KeyError, ValueError, IndexError):
            continue  # gone, or not one of ours
    return ranks


def kill_a_worker(proc):
    """kill -9 of one of the workers of the data script proc (a Popen with stderr piped), as the out-of-memory killer
    does; returns what proc printed on stderr, and checks that it ended within 5 s. proc is stopped meanwhile: it
    hands out no more tasks, so tasks remain when the worker dies however busy the machine (without the stop, a run
    near its end could finish first)."""
    os.kill(proc.pid, signal.SIGSTOP)
    assert proc.poll() is None, "the run ended before a worker could be killed"
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    os.kill(proc.pid, signal.SIGCONT)
    killed = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert time.time() - killed < 5
    return stderr


def run_in_process(script, *args, cwd, env=None):
    """Runs script's top level in this process, as `python script args` in cwd would run it; returns what it printed
    and the message of the UserError it stopped with (None if it ended without one) as .stdout and .error. No
    process to start, so no 2-3 s of importing torch: for the mistakes a script finds before it does any work, and
    for runs whose output tells the result. What the script changes in this process (its excepthook, signal
    handlers, environment, working directory, sys.path) is put back, and the folders it claimed are let go, as its end would."""
    import contextlib
    import io
    import runpy
    import signal
    import types
    import fileio
    from errors import UserError
    saved = sys.argv, os.getcwd(), sys.excepthook, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    saved_env, saved_path = dict(os.environ), list(sys.path)
    claimed = set(fileio._claimed)
    stdout, error = io.StringIO(), None
    try:
        sys.argv = [str(REPO / script), *map(str, args)]
        sys.path.insert(0, str((REPO / script).parent))  # as python does for a script: its own folder first
        os.chdir(cwd)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(stdout):
            runpy.run_path(str(REPO / script), run_name='__main__')
    except UserError as e:
        error = str(e)
    finally:
        for directory in set(fileio._claimed) - claimed:
            os.close(fileio._claimed.pop(directory))
        sys.argv, cwd, sys.excepthook, sigterm, sigint = saved
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, sigterm)
        signal.signal(signal.SIGINT, sigint)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
    return types.SimpleNamespace(stdout=stdout.getvalue(), error=error)


def train_here(cwd, out_dir, *args):
    """train.py on TINY in this process (run_in_process), which must end without an error; returns its stdout."""
    result = run_in_process('train.py', *TINY, f'--out_dir={out_dir}', *args, cwd=cwd)
    assert result.error is None, result.error
    return result.stdout


# ----------------------------------------------------------------------------- faults of the machine

@contextmanager
def mounted(directory, *mount_args):
    """A real mount on directory for the block: mounted(d, '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs') is a small disk,
    mounted(d, '--bind', '-o', 'ro', d) makes d read-only. Skips the test where mounting is not allowed (not root)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    if subprocess.run(['mount', *mount_args, str(directory)], capture_output=True).returncode != 0:
        pytest.skip("mounting a file system needs root")
    try:
        yield Path(directory)
    finally:
        subprocess.run(['umount', str(directory)], check=True)


def listing(directory):
    """The names in directory, but the lock file that a run leaves to say the folder is its own while it runs."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name != '.lock')
