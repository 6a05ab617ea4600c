"""Every crash point of every writer, by enumeration: the `enumeration` tier (python -m pytest -n 2 -m enumeration
tests; .ci/run runs it after the main suite).

Each script that writes runs once under strace (helpers.strace), which lists the calls by which it changes files
in the test's folder: every write, fsync, rename, unlink, mkdir... Then it runs again once for each of those
calls, from the same earlier state, killed (SIGKILL) as it enters that call, by strace's fault injection. After
each kill:
- what the project's own readers show (dataloader.open_dataset, checkpoint.open_checkpoint, the files of an export,
  loss.png) is the state of the last change committed before the kill: the earlier state or the new one, never a
  mix, never a change that was committed and then lost;
- the same command (for train.py: a resume, once a checkpoint of the run is there) then ends as the clean run
  ended, byte for byte (train.py: the same weights, optimizer state and losses, bit for bit).
The kill hits the call it was aimed at (checked in strace's log), so every state a crash can leave is reached.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from checkpoint import load_checkpoint, open_checkpoint
from dataloader import open_dataset
from helpers import (REPO, SHAKESPEARE, TINY, eval_losses, failure, iter_losses, read_log, strace, traced_calls,
                     train_here)

pytestmark = [pytest.mark.enumeration, pytest.mark.slow]

PYTHON = sys.executable
PARTS = 2  # the kill points of a script are shared out over this many tests, which pytest-xdist runs in parallel
OLD_TEXT = SHAKESPEARE.read_text(encoding='utf-8')[:6000]
NEW_TEXT = SHAKESPEARE.read_text(encoding='utf-8')[-8000:]  # other characters, other sizes


def tree(directory, root=None):
    """{path relative to directory: bytes} of every file under it but lock files; root (a folder the files may
    name) shown as ROOT, so that runs in other folders compare."""
    files = {}
    for path in sorted(Path(directory).rglob('*')):
        if path.is_file() and path.name != '.lock':
            content = path.read_bytes()
            files[str(path.relative_to(directory))] = content.replace(str(root).encode(), b'ROOT') if root else content
    return files


def commits(calls, names):
    """The indexes in calls (helpers.traced_calls) of the calls that commit a change of the files names: the
    rename that puts a commit record in place, or a rename onto one of names while no record is pending (a change
    of one file); see fileio.commit."""
    pending, found = False, []
    for k, (syscall, _, what) in enumerate(calls):
        target = os.path.basename(what.split()[-1])
        if syscall.startswith('rename') and target == '.commit':
            found.append(k)
            pending = True
        elif syscall.startswith('unlink') and target == '.commit':
            pending = False
        elif syscall.startswith('rename') and target in names and not pending:
            found.append(k)
    return found


def kill_at_each_call(template, command, tmp_path, names, check, part=None):
    """Runs command in a copy of template (the earlier state) under strace (its output to tmp_path/clean.out), then
    again in a fresh copy for each of its calls that change files (every PARTS-th from part, or all), killed as it
    enters the call; check(run, clean, changes) then checks the copy, where changes is how many changes of names
    were committed before the kill. Returns how many kill points ran."""
    clean = tmp_path / 'clean'
    shutil.copytree(template, clean, symlinks=True)
    proc = strace(command, clean, tmp_path / 'clean.log')
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / 'clean.out').write_text(proc.stdout + proc.stderr)  # what it said it did
    calls = traced_calls(tmp_path / 'clean.log', clean)
    committed = commits(calls, names)
    assert committed, "no change committed: nothing to test"
    points = range(len(calls)) if part is None else range(part, len(calls), PARTS)
    for k in points:
        run = tmp_path / f'kill-{k}'
        shutil.copytree(template, run, symlinks=True)
        log = tmp_path / f'kill-{k}.log'
        proc = strace(command, run, log, inject=calls[k][:2])
        assert proc.returncode == -signal.SIGKILL, f"not killed at {calls[k]}: {proc.stderr[-3000:]}"
        assert traced_calls(log, run)[-1] == calls[k], "killed at another call than the one aimed at"
        check(run, clean, sum(c < k for c in committed))
        shutil.rmtree(run)
        log.unlink()
    return len(points)


def rerun(command, cwd):
    """command run to its end in cwd, as after a kill: the CompletedProcess."""
    proc = subprocess.run(list(map(str, command)), cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1'})
    assert proc.returncode == 0, failure(proc)
    return proc


# ----------------------------------------------------------------------------- the data scripts

def dataset(directory):
    """The dataset in directory as train.py reads it (dataloader.open_dataset): {name: bytes, or None}."""
    files = open_dataset(directory, 1)
    try:
        return {name: f and f.read() for name, f in files.items()}
    finally:
        for f in files.values():
            if f is not None:
                f.close()


def parquet_sources(directory, text, files):
    """text cut into documents of 400 characters, dealt out over files parquet files in directory."""
    directory.mkdir(parents=True)
    docs = [text[i:i + 400] for i in range(0, len(text), 400)]
    for k in range(files):
        pq.write_table(pa.table({'text': docs[k::files]}), directory / f'{k}.parquet', row_group_size=4)


def data_scenario(script, tmp_path):
    """(template, command, data folder) for a data script: the template holds an earlier dataset of other text,
    which the command replaces."""
    template = tmp_path / 'template'
    (template / 'in').mkdir(parents=True)
    for name, text in (('old', OLD_TEXT), ('new', NEW_TEXT)):
        (template / 'in' / f'{name}.txt').write_text(text, encoding='utf-8')
        parquet_sources(template / 'in' / name, text, files=2)  # a progress file after the first
    run = {
        'shakespeare_char': lambda text: [REPO / 'data/shakespeare_char/prepare.py', '--input', f'in/{text}.txt',
                                          '--out_dir', 'out'],
        'shakespeare': lambda text: [REPO / 'data/shakespeare/prepare.py', '--input', f'in/{text}.txt',
                                     '--out_dir', 'out'],
        'prepare_text char': lambda text: [REPO / 'data/prepare_text.py', '--input', f'in/{text}.txt', '--name',
                                           'out', '--data_dir', '.'],
        # a GPT-2 dataset over a character one: its meta.pkl goes, in the same change
        'prepare_text gpt2': lambda text: [REPO / 'data/prepare_text.py', '--input', f'in/{text}.txt', '--name', 'out',
                                           '--data_dir', '.'] + (['--tokenizer', 'gpt2', '--bpe', 'tiktoken',
                                                                  '--num_proc', '1'] if text == 'new' else []),
        'fineweb': lambda text: [REPO / 'data/fineweb/prepare.py', '--data_files', f'in/{text}', '--out_dir', 'out',
                                 '--val_every', '5', '--bpe', 'tiktoken', '--num_proc', '1'],
        'openwebtext': lambda text: [REPO / 'data/openwebtext/prepare.py', '--data_files', f'in/{text}', '--out_dir',
                                     'out', '--val_every', '5', '--bpe', 'tiktoken', '--num_proc', '1'],
    }[script]
    rerun([PYTHON, *run('old')], template)
    return template, [PYTHON, *run('new')], 'out'


@pytest.mark.parametrize('part', range(PARTS))
@pytest.mark.parametrize('script', ['shakespeare_char', 'shakespeare', 'prepare_text char', 'prepare_text gpt2',
                                    'fineweb', 'openwebtext'])
def test_a_data_script_killed_at_any_call_leaves_the_earlier_dataset_or_the_new_and_then_finishes(script, part,
                                                                                                  tmp_path):
    template, command, folder = data_scenario(script, tmp_path)
    earlier = dataset(template / folder)

    def check(run, clean, changes):
        before = tree(run)
        assert dataset(run / folder) == (earlier if changes == 0 else dataset(clean / folder))
        assert tree(run) == before  # reading wrote nothing
        rerun(command, run)
        assert tree(run / folder) == tree(clean / folder)  # byte for byte, and no temp file or record left

    kill_at_each_call(template, command, tmp_path, {'train.bin', 'val.bin', 'meta.pkl'}, check, part)


# ----------------------------------------------------------------------------- train.py

SAVED = re.compile(r"saving checkpoint to \S+/(ckpt\.pt|last\.pt) \(.*, iter (\d+)")


def checkpoint_seen(out_dir, newest):
    """(seed, iter_num, hash of the weights) of the checkpoint that sample.py (newest=False) or a resume
    (newest=True) reads in out_dir, or None."""
    path, f = open_checkpoint(out_dir, newest)
    if f is None:
        return None
    checkpoint = load_checkpoint(path, f)
    weights = hashlib.sha256(b''.join(t.numpy().tobytes() for t in checkpoint['model'].values())).hexdigest()
    return checkpoint['config']['seed'], checkpoint['iter_num'], weights


def states(earlier, saves):
    """The checkpoints that out_dir holds after each change of the run: {name: (seed, iter)}, first the earlier
    run's, then none (set aside), then after each of saves [(name, iter)] (a ckpt.pt removes last.pt)."""
    state = dict(earlier)
    history = [dict(state)]
    state.clear()
    history.append(dict(state))
    for name, iter_num in saves:
        state[name] = (1337, iter_num)
        if name == 'ckpt.pt':
            state.pop('last.pt', None)
        history.append(dict(state))
    return history


@pytest.mark.parametrize('part', range(PARTS))
def test_training_killed_at_any_call_keeps_the_newest_checkpoint_and_resumes_to_the_same_weights(part, tmp_path):
    # over an earlier run's two checkpoints, which the run first moves aside, last.pt every 2 iterations and ckpt.pt
    # at evals (always_save_checkpoint=False), which removes last.pt: every kind of change of an out_dir
    template = tmp_path / 'template'
    template.mkdir()
    (template / 'in.txt').write_text(OLD_TEXT * 2, encoding='utf-8')
    rerun([PYTHON, REPO / 'data/prepare_text.py', '--input', 'in.txt', '--name', 'shakespeare_char', '--data_dir',
           'data'], template)
    args = [*TINY, '--out_dir=out', '--always_save_checkpoint=False', '--eval_interval=3', '--checkpoint_interval=2',
            '--log_interval=100']
    # the earlier run: ckpt.pt of iter 3, then a last.pt of iter 4 (its learning rate 0: the val loss cannot improve)
    rerun([PYTHON, REPO / 'train.py', *args, '--seed=7', '--max_iters=3'], template)
    rerun([PYTHON, REPO / 'train.py', *args, '--seed=7', '--max_iters=4', '--init_from=resume', '--decay_lr=False',
           '--learning_rate=0'], template)
    earlier = {'ckpt.pt': (7, 3), 'last.pt': (7, 4)}
    assert [checkpoint_seen(template / 'out', newest)[:2] for newest in (False, True)] == [(7, 3), (7, 4)]
    command = [PYTHON, REPO / 'train.py', *args, '--max_iters=3']  # last.pt of iter 2, then ckpt.pt of 3
    seen = {}  # (seed, iter) -> the hash of its weights, the same in every run that shows it

    def expect(run, clean, changes):
        saves = [(name, int(i)) for name, i in SAVED.findall((tmp_path / 'clean.out').read_text())]
        state = states(earlier, saves)[changes]
        for newest in (False, True):
            name = ('last.pt' if 'last.pt' in state else 'ckpt.pt') if newest else \
                ('ckpt.pt' if 'ckpt.pt' in state else 'last.pt')
            got = checkpoint_seen(run / 'out', newest)
            assert (got and got[:2]) == state.get(name), (newest, changes)
            if got:
                assert seen.setdefault(got[:2], got[2]) == got[2]
        return any(seed == 1337 for seed, _ in state.values())

    def check(run, clean, changes):
        before = tree(run)
        resumable = expect(run, clean, changes)
        assert tree(run) == before
        rerun(command + ['--init_from=resume'] if resumable else command, run)
        assert checkpoint_seen(run / 'out', True) == checkpoint_seen(clean / 'out', True)
        assert_same_state(run / 'out', clean / 'out')

    assert kill_at_each_call(template, command, tmp_path, {'ckpt.pt', 'last.pt'}, check, part) > 10


def assert_same_state(out_dir, clean_dir):
    """The newest training state and the losses of out_dir are the clean run's, bit for bit; the earlier run's
    checkpoints are in earlier/, as the clean run left them."""
    a, b = (load_checkpoint(*open_checkpoint(d, newest=True)) for d in (out_dir, clean_dir))
    assert a['iter_num'] == b['iter_num'] and a['best_val_loss'] == b['best_val_loss']
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in b['model'])
    assert all(torch.equal(x, y) if torch.is_tensor(x) else x == y
               for state_a, state_b in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values())
               for x, y in zip(state_a.values(), state_b.values()))
    assert iter_losses(read_log(out_dir)) == iter_losses(read_log(clean_dir))
    assert eval_losses(read_log(out_dir)) == eval_losses(read_log(clean_dir))
    assert tree(out_dir / 'earlier') == tree(clean_dir / 'earlier')
    assert sorted(os.listdir(out_dir)) == sorted(os.listdir(clean_dir))  # no temp file, no record


# ----------------------------------------------------------------------------- export.py and plot.py

@pytest.fixture(scope='module')
def two_runs(char_run, char_data_root, tmp_path_factory):
    """(char_run, another out_dir): two checkpoints of other weights, to export one over the other's export."""
    other = tmp_path_factory.mktemp('other') / 'out'
    train_here(char_data_root, other, '--max_iters=2', '--eval_interval=2', '--seed=7')
    return char_run, other


@pytest.mark.parametrize('part', range(PARTS))
def test_an_export_killed_at_any_call_leaves_the_earlier_export_or_the_new_and_then_finishes(two_runs, part, tmp_path):
    new, earlier = two_runs
    template = tmp_path / 'template'
    shutil.copytree(new, template / 'out')
    shutil.copytree(earlier, template / 'earlier')
    rerun([PYTHON, REPO / 'export.py', '--out_dir=earlier', '--hf_dir=hf'], template)
    command = [PYTHON, REPO / 'export.py', '--out_dir=out', '--hf_dir=hf']

    def check(run, clean, changes):
        if changes == 0:
            assert tree(run / 'hf') == tree(template / 'hf')  # the earlier export, byte for byte
        else:  # the new one (its marker names its checkpoint's path, in its own folder: shown as ROOT)
            assert tree(run / 'hf', run) == tree(clean / 'hf', clean)
        rerun(command, run)
        assert tree(run, run) == tree(clean, clean)  # the new export, and no temp folder left

    kill_at_each_call(template, command, tmp_path, {'hf'}, check, part)


def test_plot_killed_at_any_call_leaves_the_earlier_picture_or_the_new_and_then_finishes(char_run, tmp_path):
    template = tmp_path / 'template'
    (template / 'out').mkdir(parents=True)
    lines = (char_run / 'log.jsonl').read_text().splitlines(keepends=True)
    (template / 'out' / 'log.jsonl').write_text(''.join(lines[:3]))
    rerun([PYTHON, REPO / 'plot.py', '--out_dir=out'], template)  # the earlier picture, of fewer iterations
    (template / 'out' / 'log.jsonl').write_text(''.join(lines))
    command = [PYTHON, REPO / 'plot.py', '--out_dir=out']
    earlier = (template / 'out' / 'loss.png').read_bytes()

    def check(run, clean, changes):
        assert (run / 'out' / 'loss.png').read_bytes() == (earlier if changes == 0 else
                                                            (clean / 'out' / 'loss.png').read_bytes())
        rerun(command, run)
        assert tree(run) == tree(clean)

    kill_at_each_call(template, command, tmp_path, {'loss.png'}, check)


# ----------------------------------------------------------------------------- the roll-forward itself

def test_a_roll_forward_killed_at_any_call_is_finished_by_the_next_writer(tmp_path):
    # a dataset change whose writer died after its record was in place, then the next writer (its claim rolls
    # the record forward) killed at each of its calls in turn: the readers see the new dataset throughout
    template = tmp_path / 'template'
    data = template / 'out'
    data.mkdir(parents=True)
    for name, content in (('train.bin', b'old train.'), ('val.bin', b'old val.'), ('meta.pkl', b'old meta')):
        (data / name).write_bytes(content)
    for name, content in (('train.bin', b'new train.'), ('val.bin', b'new val.')):
        (data / f'{name}.tmp.999999@{os.uname().nodename}').write_bytes(content)
    (data / '.commit').write_text('{"moves": [["train.bin.tmp.999999@%s", "train.bin"], ["val.bin.tmp.999999@%s", '
                                  '"val.bin"]], "removals": ["meta.pkl"]}' % ((os.uname().nodename,) * 2))
    command = [PYTHON, '-c', f'import sys; sys.path.insert(0, {str(REPO)!r}); import fileio; '
                             f'fileio.claim("out", "")']
    new = {'train': b'new train.', 'val': b'new val.', 'meta.pkl': None}

    def check(run, clean, changes):
        assert dataset(run / 'out') == new
        rerun(command, run)
        assert tree(run) == tree(clean) == {'out/train.bin': b'new train.', 'out/val.bin': b'new val.'}

    kill_at_each_call(template, command, tmp_path, {'train.bin', 'val.bin'}, check)
