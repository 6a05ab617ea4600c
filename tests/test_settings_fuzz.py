"""Every setting of every script, given values of every kind by hypothesis: out of range, of the wrong type, huge, nan
or inf, empty, unicode, a NUL character, a path below a file. Each value ends the script in one line (a UserError:
exit code 1, no traceback) with nothing written, or starts a run that goes on (stopped here after a few seconds).
A tier of its own (the marker `enumeration`): python -m pytest -n 2 tests -m enumeration."""

import ast
import json
import os
import re
import shutil
import signal
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from configurator import setting_comments
from helpers import BLOCKED_NETWORK, HELLASWAG_EXAMPLES, REPO, TINY, run_in_process

pytestmark = [pytest.mark.enumeration, pytest.mark.slow]

BELOW_A_FILE = '{a_file}/below'  # replaced by a path below a regular file of the example's own directory
VALUES = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, -1, 1, 3, 2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float('nan'), float('inf'), -float('inf'), 1e308, 5e-324, 0.5]),
    st.booleans(), st.none(),
    st.text(max_size=12),
    st.sampled_from(['', '\0', 'a\0b', 'é日😀', 'a' * 300, '/dev/null', '/proc/1/x', BELOW_A_FILE, 'cpu', 'cuda',
                     'resume', 'gpt2', 'float16', 'None', '[1, 2]', "{'a': 1}"]),
    st.lists(st.integers(), max_size=3),
)


class Overtime(BaseException):
    """A run that went on past the example's few seconds."""


MEMORY = 3 * 2**30  # a run is stopped once the test's process holds this much (resident bytes)


def stop_when_too_big(ended):
    """Sends this process the SIGALRM that stops a run while it holds MEMORY, until ended is set: train.py builds any
    model that fits the machine's memory, as a user may mean (hardware.check_fits), and a few seconds of one can take
    gigabytes, beside the other tests."""
    page = os.sysconf('SC_PAGE_SIZE')
    while not ended.wait(0.05):
        with open('/proc/self/statm') as statm:
            if int(statm.read().split()[1]) * page > MEMORY:
                os.kill(os.getpid(), signal.SIGALRM)


def overtime(signum, frame):
    """Raises Overtime where the script runs (below runpy's frame), never in run_in_process's restoring after it."""
    while frame is not None:
        if frame.f_code.co_name == '_run_code' and frame.f_globals.get('__name__') == 'runpy':
            raise Overtime
        frame = frame.f_back


def run_briefly(script, *args, cwd, seconds=6, env=None):
    """run_in_process's result, or None for a run still going after seconds, or holding MEMORY (a SIGALRM raises
    Overtime in it). The alarm comes again every second: Python drops an exception raised in a garbage collector's
    callback (hypothesis has one) or a finalizer, and so it once dropped the only alarm of the build of a model of
    n_layer=73297, which went on until the out-of-memory killer ended the test's process."""
    previous = signal.signal(signal.SIGALRM, overtime)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1)
    ended = threading.Event()
    watchdog = threading.Thread(target=stop_when_too_big, args=(ended,), daemon=True)
    watchdog.start()
    try:
        return run_in_process(script, *args, cwd=cwd, env=env)
    except Overtime:
        return None
    finally:
        ended.set()
        watchdog.join()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_run_is_stopped_at_the_next_alarm_when_one_is_dropped(tmp_path):
    (tmp_path / 'drops.py').write_text("import gc, time\n"
                                       "gc.callbacks.append(lambda phase, info: time.sleep(10))  # the alarm comes here\n"
                                       "gc.collect()\ngc.callbacks.clear()\ntime.sleep(600)\n")
    started = time.time()
    assert run_briefly(tmp_path / 'drops.py', cwd=tmp_path, seconds=1) is None and time.time() - started < 60


def test_a_run_is_stopped_when_it_holds_too_much_memory(tmp_path):
    (tmp_path / 'hog.py').write_text("import time\nchunks = [b'x' * 10**8 for _ in range(40)]\ntime.sleep(600)\n")
    started = time.time()
    assert run_briefly(tmp_path / 'hog.py', cwd=tmp_path, seconds=600) is None and time.time() - started < 60


def test_a_script_run_here_leaves_torchs_grad_and_autocast_modes_as_they_were(tmp_path):
    # a run the alarm stopped inside torch.no_grad once left grad off for the rest of its worker (run_in_process)
    (tmp_path / 'modes.py').write_text("import torch\ntorch.set_grad_enabled(False)\n"
                                       "torch.set_autocast_enabled('cpu', True)\n")
    run_in_process(tmp_path / 'modes.py', cwd=tmp_path)
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled('cpu')


def as_argument(key, value, a_file, style):
    """--key=value as a user types it: text as it is, anything else as its Python literal; or argparse's two words."""
    text = value.replace(BELOW_A_FILE, f'{a_file}/below') if isinstance(value, str) else repr(value)
    return [f'--{key}', text] if style == 'argparse' else [f'--{key}={text}']


def assert_one_line_or_a_run(result, key, out_dir):
    """A UserError of one line, with nothing written when it is about the setting; or a run (ended or going on)."""
    if result is None or result.error is None:
        return
    assert '\n' not in result.error and result.error.strip(), result.error
    if result.error.startswith((f'{key}=', f'{key} ', f'--{key}')):
        assert not os.path.exists(out_dir) or not os.listdir(out_dir), (result.error, os.listdir(out_dir))


def settings_of(script):
    return list(setting_comments(REPO / script))


@pytest.fixture(scope="module")
def workspace(char_data_root, char_run, tmp_path_factory):
    """What every example starts from: tiny Shakespeare, a trained checkpoint, a GPT-2-vocabulary transformers
    directory and a HellaSwag file."""
    ws = tmp_path_factory.mktemp("fuzz")
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=64)).save_pretrained(ws / 'gpt2-tiny')
    (ws / 'hellaswag.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in HELLASWAG_EXAMPLES))
    return dict(data=char_data_root / 'data', run=char_run, gpt2=ws / 'gpt2-tiny', hellaswag=ws / 'hellaswag.jsonl')


def example_dir(tmp_path_factory, workspace):
    """A fresh directory for one example: data/ of the workspace, a regular file, and where outputs go."""
    cwd = tmp_path_factory.mktemp("example")
    (cwd / 'data').symlink_to(workspace['data'])
    (cwd / 'a_file').write_text('a regular file')
    return cwd


FUZZED = settings(max_examples=12, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


MODEL_SCRIPTS = {  # each model script, the arguments it runs with otherwise, and what a refusal leaves unwritten
    'train.py': ([*TINY, '--out_dir={cwd}/out', '--max_iters=2', '--eval_interval=2'], 'out'),
    'sample.py': (['--device=cpu', '--out_dir={run}', '--num_samples=2', '--max_new_tokens=3'], 'nothing'),
    'export.py': (['--out_dir={cwd}/run', '--hf_dir={cwd}/hf'], 'hf'),  # a copy: it writes beside the checkpoint
    'eval_hellaswag.py': (['--device=cpu', '--init_from={gpt2}', '--hellaswag_file={hellaswag}'], 'nothing'),
    'plot.py': ([], 'nothing'),
    'bench.py': (['--device=cpu', '--compile=False', '--n_layer=1', '--n_head=1', '--n_embd=8', '--block_size=8',
                  '--batch_size=2', '--burn_in_iters=1', '--timed_iters=1', '--max_new_tokens=2', '--num_samples=2',
                  '--rounds=1'], 'bench_log'),
}


@pytest.mark.parametrize('script, key', [(script, key) for script in MODEL_SCRIPTS for key in settings_of(script)])
@FUZZED
@given(value=VALUES)
def test_model_scripts(script, key, value, workspace, tmp_path_factory):
    cwd = example_dir(tmp_path_factory, workspace)
    shutil.copytree(workspace['run'], cwd / 'run')
    args, output = MODEL_SCRIPTS[script]
    base = [a.format(cwd=cwd, **workspace) for a in args]
    result = run_briefly(script, *base, *as_argument(key, value, cwd / 'a_file', 'configurator'), cwd=cwd,
                         seconds=20 if script == 'export.py' else 6, env={**BLOCKED_NETWORK, 'HF_TOKEN': ''})
    assert_one_line_or_a_run(result, key, cwd / output)


WEB = ['--data_files', '{parquet}', '--out_dir', '{cwd}/prepared', '--num_proc', '1']
DATA_SCRIPTS = {  # each data script, and the arguments it runs with otherwise
    'data/prepare_text.py': ['--input', '{input}', '--name', 'mine', '--data_dir', '{cwd}/prepared', '--num_proc', '1'],
    'data/shakespeare_char/prepare.py': ['--input', '{input}', '--out_dir', '{cwd}/prepared'],
    'data/shakespeare/prepare.py': ['--input', '{input}', '--out_dir', '{cwd}/prepared'],
    'data/fineweb/prepare.py': WEB,
    'data/openwebtext/prepare.py': WEB,
}


def data_script_options(script):
    """The options of a data script: the keywords of its call of corpus.parse_args, read from its source."""
    tree = ast.parse((REPO / script).read_text(encoding='utf-8'))
    return [keyword.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'attr', None) == 'parse_args' for keyword in node.keywords]


@pytest.mark.parametrize('script, key', [(script, key) for script in DATA_SCRIPTS
                                         for key in data_script_options(script)])
@FUZZED
@given(value=VALUES)
def test_data_scripts(script, key, value, workspace, tmp_path_factory):
    cwd = example_dir(tmp_path_factory, workspace)
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    (cwd / 'input.txt').write_text(text)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({'text': [text] * 20}), cwd / 'web.parquet')
    base = [a.format(input=cwd / 'input.txt', parquet=cwd / 'web.parquet', cwd=cwd) for a in DATA_SCRIPTS[script]]
    result = run_briefly(script, *base, *as_argument(key, value, cwd / 'a_file', 'argparse'), cwd=cwd,
                         env=BLOCKED_NETWORK)
    assert_one_line_or_a_run(result, key, cwd / 'prepared')


def test_every_data_script_and_its_every_option_is_fuzzed():
    scripts = {str(p.relative_to(REPO)) for p in [*REPO.glob('data/*.py'), *REPO.glob('data/*/prepare.py')]}
    assert scripts == set(DATA_SCRIPTS)
    assert {'tokenizer', 'vocab_size', 'tokenizer_mb'} <= set(data_script_options('data/fineweb/prepare.py'))


def test_every_setting_of_the_model_scripts_is_fuzzed():
    # a setting added to a script is fuzzed without a change here, a script with settings once it is in MODEL_SCRIPTS
    reads_settings = re.compile(r'^\s*(config = )?configure\(globals\(\)', re.M)
    assert {p.name for p in REPO.glob('*.py') if reads_settings.search(p.read_text())} == set(MODEL_SCRIPTS)
    counts = {script: len(settings_of(script)) for script in MODEL_SCRIPTS}
    assert all(counts.values()) and counts['train.py'] >= 40, counts
