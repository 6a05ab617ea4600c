"""What the tests share: where things are, running the repo's scripts for real, and reading what they wrote.
Fixtures live in conftest.py; no test module imports another."""

import functools
import http.server
import json
import os
import re
import shutil
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
        pytest.fail(f"{script} {failure(proc)}")
    return proc


def assert_user_error(proc, message):
    """A mistake of the user's (or a machine that cannot do what was asked) ends a script with one line on stderr
    that says what is wrong, exit code 1, and no traceback: the last line, after the notes the script printed."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, \
        proc.stderr[-3000:]
    assert message.rstrip("\n") in lines[-1], proc.stderr[-3000:]


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


def failure(proc):
    """What a failed process printed, for an assertion's message: stderr first (where the cause is), then stdout."""
    return f"exit code {proc.returncode}\n--- stderr\n{proc.stderr[-8000:]}\n--- stdout\n{proc.stdout[-3000:]}"


def torchrun_command(out_dir, *args, nproc=2):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
            str(REPO / 'train.py'), *TINY, f'--out_dir={out_dir}', *args]


def torchrun(cwd, out_dir, *args, check=True, nproc=2):
    """train.py on TINY under a real torchrun of nproc processes on CPU (gloo)."""
    proc = subprocess.run(torchrun_command(out_dir, *args, nproc=nproc), cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 or not check, failure(proc)
    return proc


def torchrun_killed_once(cwd, out_dir, *args):
    """train.py on TINY under a real torchrun of 2 processes with --max-restarts=1, whose rank 1 is killed (kill -9)
    once the log is past iter 10; the run must end well. Returns the records of its log."""
    command = torchrun_command(out_dir, *args)
    command.insert(command.index('--standalone'), '--max-restarts=1')
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while max(logged_iters(out_dir), default=0) < 10:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    os.kill(rank_pids(proc.pid)[1], signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-8000:]
    return read_log(out_dir)


def assert_same_training_state(a, b):
    """The checkpoints a and b hold the same weights and the same state of each optimizer (AdamW's under
    'optimizer', Muon's under 'muon'), bit for bit."""
    import torch
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    for key in ('optimizer', 'muon'):
        assert (a.get(key) is None) == (b.get(key) is None), key
        if a.get(key) is not None:
            assert all(torch.equal(t, b[key]['state'][i][name]) for i, state in a[key]['state'].items()
                       for name, t in state.items())


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


def samples(stdout):
    """The samples that sample.py printed: its stdout holds them alone, each followed by SEPARATOR."""
    assert stdout.endswith(SEPARATOR), stdout[-300:]
    return stdout[:-len(SEPARATOR)].split(SEPARATOR)


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


def run_in_process(script, *args, cwd, env=None, capture_stderr=True):
    """Runs script's top level in this process, as `python script args` in cwd would run it; returns what it printed
    and the message of the UserError it stopped with (None if it ended without one) as .stdout, .stderr (unless
    capture_stderr=False: sys.stderr's, a test's terminal) and .error, and the code it exited with (.exit_code: None
    when it did not call sys.exit). No
    process to start, so no 2-3 s of importing torch: for the mistakes a script finds before it does any work, and
    for runs whose output tells the result. What the script changes in this process (its excepthook, signal
    handlers, streams, environment, working directory, sys.path, torch's grad and autocast modes) is put back, and the
    folders it claimed are let go, as its end would. The modes: a script stopped by an exception raised at any
    instant (tests/test_settings_fuzz.py's alarm) can stop, for one, inside torch.no_grad's __exit__ before it turns
    grad back on (seen once in the enumeration tier: every later training in that worker failed for want of gradients)."""
    import contextlib
    import io
    import runpy
    import signal
    import types
    import errors
    import fileio
    from errors import UserError
    saved = sys.argv, os.getcwd(), sys.excepthook, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    saved_streams = sys.stdout, sys.stderr, errors._on_broken_stream
    saved_env, saved_path = dict(os.environ), list(sys.path)
    import torch
    saved_modes = torch.is_grad_enabled(), torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu')
    claimed = set(fileio._claimed)
    stdout, stderr, error, exit_code = io.StringIO(), io.StringIO(), None, None
    try:
        sys.argv = [str(REPO / script), *map(str, args)]
        sys.path.insert(0, str((REPO / script).parent))  # as python does for a script: its own folder first
        os.chdir(cwd)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr) if capture_stderr else contextlib.nullcontext():
            runpy.run_path(str(REPO / script), run_name='__main__')
    except UserError as e:
        error = str(e)
    except SystemExit as e:  # --help, for one
        exit_code = e.code
    finally:
        for directory in set(fileio._claimed) - claimed:
            os.close(fileio._claimed.pop(directory))
        sys.argv, cwd, sys.excepthook, sigterm, sigint = saved
        sys.stdout, sys.stderr, errors._on_broken_stream = saved_streams
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, sigterm)
        signal.signal(signal.SIGINT, sigint)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        grad, autocast, autocast_dtype = saved_modes
        torch.set_grad_enabled(grad)
        torch.set_autocast_enabled('cpu', autocast)
        torch.set_autocast_dtype('cpu', autocast_dtype)
    return types.SimpleNamespace(stdout=stdout.getvalue(), stderr=stderr.getvalue(), error=error, exit_code=exit_code)


def train_here(cwd, out_dir, *args):
    """train.py on TINY in this process (run_in_process), which must end without an error; returns what it printed
    (.stdout, the run's log, and .stderr, its notes)."""
    result = run_in_process('train.py', *TINY, f'--out_dir={out_dir}', *args, cwd=cwd)
    assert result.error is None, result.error
    return result


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


# ----------------------------------------------------------------------------- crash points (strace)

# the system calls that change files. A kill before each in turn leaves every state that a crash can leave: a call
# not here (opening, chmod) shows in the state at the next call that is
FS_CALLS = ('write', 'pwrite64', 'writev', 'pwritev', 'sendfile', 'copy_file_range', 'fsync', 'fdatasync', 'ftruncate',
            'truncate', 'fallocate', 'rename', 'renameat', 'renameat2', 'link', 'linkat', 'symlink', 'symlinkat',
            'unlink', 'unlinkat', 'mkdir', 'mkdirat', 'rmdir')
WRITES = ('write', 'pwrite64', 'writev', 'pwritev')  # their strings are data, not paths
TRACED_CALL = re.compile(r'(\w+)\((.*)\)\s+= (.*)')


def strace(command, cwd, log, inject=None, env=None):
    """Runs command (a list) in cwd under strace, which logs its file-changing calls (FS_CALLS) to log, with the
    paths of their file descriptors; inject: (syscall, n) to kill it (SIGKILL) as it enters its n-th call of
    syscall. Only the process itself is traced, not its threads or children: strace counts each one's calls apart
    (its man page: "per syscall and per tracee"), so that n names one call of the writer. Returns the
    CompletedProcess."""
    if shutil.which('strace') is None:
        pytest.skip("needs strace (apt install strace)")
    options = ['-qq', '-y', '-e', 'trace=' + ','.join(FS_CALLS), '-e', 'signal=none', '-o', str(log)]
    if inject:
        options += ['-e', f'inject={inject[0]}:signal=KILL:when={inject[1]}']
    return subprocess.run(['strace', *options, *map(str, command)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', **(env or {})})


def traced_calls(log, root):
    """[(syscall, n, what)] of the calls in strace's log that touch a path under root: the n-th call of syscall in
    the log (as strace's when=n counts), and what it did (the call with its paths, root shown as ROOT, the pid in
    temp names as PID and random temp names as TEMPFILE, so that runs in other folders compare)."""
    root = str(root)
    counts, calls = {}, []
    for line in Path(log).read_text().splitlines():
        match = TRACED_CALL.fullmatch(line)
        if not match:
            continue
        syscall, args, _ = match.groups()
        counts[syscall] = counts.get(syscall, 0) + 1
        paths = [p for p in re.findall(r'\d+<([^>]*)>', args) if os.path.isabs(p)]  # not pipe:[...], socket:[...]
        if syscall not in WRITES:
            paths += [os.path.join(root, p) for p in re.findall(r'"([^"]*)"', args)]  # relative ones: to cwd, root
        if any(p == root or p.startswith(root + os.sep) for p in paths):
            what = re.sub(r'\.tmp\.\d+@', '.tmp.PID@', f"{syscall} {' '.join(paths)}".replace(root, 'ROOT'))
            what = re.sub(r'/\.?tmp[A-Za-z0-9_]{6,8}\b', '/TEMPFILE', what)  # a library's random temp file name
            calls.append((syscall, counts[syscall], what))
    return calls
