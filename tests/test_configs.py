"""Every config/*.py runs train.py (in this process) for two iterations on CPU, with the model shrunk and data from fixtures: the
README's commands keep working as the code changes. A new config file is picked up by the glob."""

import json
import runpy

import numpy as np
import pytest

from checkpoint import load_checkpoint, open_checkpoint
from helpers import HELLASWAG_EXAMPLES, REPO, run_in_process

CONFIGS = sorted(path.name for path in (REPO / 'config').glob('*.py'))

SMALL = ['--device=cpu', '--compile=False', '--wandb_log=False', '--max_iters=2', '--eval_iters=1',
         '--batch_size=2', '--gradient_accumulation_steps=1', '--block_size=32', '--n_layer=2', '--n_head=2',
         '--n_embd=32']


@pytest.fixture(scope='module')
def workspace(char_data_root, tmp_path_factory):
    """A directory to run train.py in: shakespeare_char prepared, random GPT-2 tokens for every other dataset
    folder in data/, a tiny random GPT-2 saved by transformers, and a HellaSwag file."""
    from transformers import GPT2Config, GPT2LMHeadModel
    ws = tmp_path_factory.mktemp('configs')
    (ws / 'data').mkdir()
    (ws / 'data' / 'shakespeare_char').symlink_to(char_data_root / 'data' / 'shakespeare_char')
    rng = np.random.default_rng(0)
    for prepare in (REPO / 'data').glob('*/prepare.py'):
        name = prepare.parent.name
        if name != 'shakespeare_char':
            (ws / 'data' / name).mkdir()
            for split in ('train', 'val'):
                rng.integers(0, 50257, size=4096, dtype=np.uint16).tofile(ws / 'data' / name / f'{split}.bin')
    GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2)) \
        .save_pretrained(ws / 'tiny-gpt2')
    (ws / 'hellaswag.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in HELLASWAG_EXAMPLES))
    return ws


@pytest.mark.slow  # train.py in this process, but the GPT-2 vocabulary's models take seconds
@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_two_iterations_on_cpu(config, workspace, tmp_path):
    settings = runpy.run_path(str(REPO / 'config' / config))
    args = [str(REPO / 'config' / config), *SMALL, f'--out_dir={tmp_path / "out"}']
    if str(settings.get('init_from', '')).startswith('gpt2'):
        args.append(f'--init_from={workspace / "tiny-gpt2"}')  # GPT-2's weights cannot be downloaded here
    if settings.get('hellaswag'):
        args.append(f'--hellaswag_file={workspace / "hellaswag.jsonl"}')
    assert run_in_process('train.py', *args, cwd=workspace).error is None

    records = [json.loads(line) for line in (tmp_path / 'out' / 'log.jsonl').read_text().splitlines()]
    evals = [r for r in records if 'val_loss' in r]
    assert [r['iter'] for r in evals] == ([0] if settings.get('eval_only') else [0, 2]), records
    assert all(np.isfinite(r['val_loss']) for r in evals)
    if settings.get('hellaswag'):
        assert all('hellaswag_acc_norm' in r for r in evals)
    if not settings.get('eval_only'):
        assert load_checkpoint(*open_checkpoint(tmp_path / 'out', newest=True))['iter_num'] == 2
