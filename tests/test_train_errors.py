"""Every mistake a user can make when starting train.py ends with one line that names the problem and the fix,
a non-zero exit, no traceback, and nothing on disk changed."""

import os
import pickle

import numpy as np
import pytest
import torch
from helpers import TINY, assert_user_error, run_script, run_in_process



class NotPlainData:
    pass


def char_meta(chars):
    return {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {c: i for i, c in enumerate(chars)}}


@pytest.fixture(scope="module")
def workspace(char_data_root, char_run, tmp_path_factory):
    """A directory to run train.py in: data/ with shakespeare_char and broken datasets, run/ with a checkpoint,
    and broken checkpoints and out_dirs."""
    ws = tmp_path_factory.mktemp("errors")
    (ws / 'data').mkdir()
    (ws / 'data' / 'shakespeare_char').symlink_to(char_data_root / 'data' / 'shakespeare_char')
    metas = {'badmeta': {'vocab_size': 65, 'evil': NotPlainData()}, 'bigvocab': {'vocab_size': 1000},
             'hugevocab': {'vocab_size': 10 ** 30}, 'itos_not_a_dict': {'vocab_size': 2, 'itos': 'ab', 'stoi': {}},
             'twelve': char_meta('abcdefghijkl'),
             'other65': char_meta([chr(c) for c in range(200, 265)])}  # as many characters as shakespeare_char's
    (ws / 'data' / 'gpt2ids').mkdir()  # GPT-2 ids beside characters' meta.pkl: 65 ids, but ids up to 50256
    for split in ('train', 'val'):
        np.arange(100, 2100, dtype=np.uint16).tofile(ws / 'data' / 'gpt2ids' / f'{split}.bin')
    with open(ws / 'data' / 'gpt2ids' / 'meta.pkl', 'wb') as f:
        pickle.dump(char_meta([chr(c) for c in range(65, 130)]), f)
    for name in ['noval', 'tiny', 'oddbytes', *metas]:
        (ws / 'data' / name).mkdir()
        for split in ['train'] if name == 'noval' else ['train', 'val']:
            ids = np.arange(10 if name == 'tiny' else 1000) % min(metas.get(name, {}).get('vocab_size', 50257), 50257)
            ids.astype(np.uint16).tofile(ws / 'data' / name / f'{split}.bin')
        if name in metas:
            with open(ws / 'data' / name / 'meta.pkl', 'wb') as f:
                pickle.dump(metas[name], f)
    with open(ws / 'data' / 'oddbytes' / 'val.bin', 'ab') as f:
        f.write(b'\0')

    (ws / 'run').mkdir()
    good = (char_run / 'ckpt.pt').read_bytes()
    (ws / 'run' / 'ckpt.pt').write_bytes(good)
    for name, content in {'trunc': good[:len(good) // 2], 'notckpt': b"not a checkpoint\n"}.items():
        (ws / name).mkdir()
        (ws / name / 'ckpt.pt').write_bytes(content)
    checkpoint = torch.load(ws / 'run' / 'ckpt.pt', weights_only=True)
    variants = {'wrongargs': {**checkpoint, 'model_args': {**checkpoint['model_args'], 'n_embd': 64}},
                'nanogpt_run': {k: v for k, v in checkpoint.items() if k not in ('vocab', 'tokens')},
                'weights_only': {k: checkpoint[k] for k in ('model', 'model_args')},
                'crafted_args': {**checkpoint, 'model_args': {**checkpoint['model_args'], 'n_layer': 'x'}}}
    for name, variant in variants.items():
        (ws / name).mkdir()
        torch.save(variant, ws / name / 'ckpt.pt')
    (ws / 'badlast').mkdir()
    (ws / 'badlast' / 'ckpt.pt').write_bytes(good)
    (ws / 'badlast' / 'last.pt').write_bytes(good[:100])
    (ws / 'empty').mkdir()
    (ws / 'afile').write_text("I am a file\n")
    return ws


def snapshot(*roots):
    """Every file and directory under roots (following symlinks), with its size and modification time."""
    files = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            for name in dirnames + filenames:
                stat = os.stat(os.path.join(dirpath, name))
                files[os.path.join(dirpath, name)] = (stat.st_size, stat.st_mtime_ns)
    return files


def unwritable_dir(tmp_path):
    """A directory train.py cannot create its out_dir in: read-only for a normal user; root writes anywhere but
    sysfs refuses it new directories."""
    if os.geteuid() == 0:
        return '/sys/nanogpt-test-out'
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    return str(locked / 'out')


ERRORS = {
    # id: (arguments after TINY, the expected error line after 'error: '); test_configurator.py has the rest of
    # the configurator's errors, which reach train.py the same way
    'unknown_key': (['--batchsize=8'],
                    "unknown config key 'batchsize' (in --batchsize=8); did you mean batch_size?"),
    'wrong_type': (['--max_iters=ten'], "max_iters must be int like its default 600000, got 'ten' (in --max_iters=ten)"),
    'missing_dataset': (['--dataset=nope'],
                        "no dataset directory data/nope; prepare it, e.g. python data/prepare_text.py "
                        "--input YOUR_TEXT --name nope (or pick another --dataset)"),
    'missing_bin': (['--dataset=noval'],
                    "no data/noval/val.bin; prepare it, e.g. python data/prepare_text.py --input YOUR_TEXT --name noval"),
    'dataset_shorter_than_block': (['--dataset=tiny'],
                                   "data/tiny/train.bin has 10 tokens, fewer than block_size + 1 = 33; "
                                   "use a smaller --block_size or more data"),
    'unsafe_meta': (['--dataset=badmeta'],
                    "cannot read data/badmeta/meta.pkl (it holds a test_train_errors.NotPlainData, which is not "
                    "plain data); run the dataset's prepare.py again"),
    'resume_on_a_larger_vocabulary': (['--init_from=resume', '--out_dir=nanogpt_run', '--dataset=bigvocab'],
                                      "dataset=bigvocab has 1000 token ids but the model from init_from=resume knows "
                                      "only 65 (it was trained on shakespeare_char); pick a dataset of its vocabulary"),
    'token_ids_outside_the_vocabulary': (['--dataset=gpt2ids'],
                                         "data/gpt2ids/train.bin holds token id 100 at token 0, but its vocabulary has "
                                         "only 65 ids (0..64): the files of the dataset do not belong together, or it "
                                         "is corrupt; prepare it again"),
    'out_dir_empty': (['--out_dir='], "out_dir is empty; name a directory, e.g. --out_dir=out"),
    'out_dir_below_a_file': (['--out_dir=afile/out'],
                             "out_dir=afile/out is below {ws}/afile, which is a file, not a directory; pick another "
                             "--out_dir"),
    'n_embd_not_divisible_by_n_head': (['--n_embd=30', '--n_head=4'],
                                       "n_embd=30 is not divisible by n_head=4; each head gets n_embd/n_head dimensions"),
    'resume_without_checkpoint': (['--init_from=resume', '--out_dir=empty'],
                                  "no checkpoint at empty/ckpt.pt; train one first or point --out_dir at the run's "
                                  "directory"),
    'truncated_checkpoint': (['--init_from=resume', '--out_dir=trunc'], "cannot read checkpoint trunc/ckpt.pt"),
    'not_a_checkpoint': (['--init_from=resume', '--out_dir=notckpt'], "cannot read checkpoint notckpt/ckpt.pt"),
    'checkpoint_with_wrong_model_args': (['--init_from=resume', '--out_dir=wrongargs'],
                                         "the weights in wrongargs/ckpt.pt do not fit its model_args"),
    'out_dir_is_a_file': (['--out_dir=afile'], "out_dir=afile is a file, not a directory; pick another --out_dir"),
    'unwritable_out_dir': ([], "cannot write /sys/nanogpt-test-out: it is not writable"),
    'odd_number_of_bytes': (['--dataset=oddbytes'], "data/oddbytes/val.bin has an odd number of bytes, so it is not "
                                                    "uint16 token ids"),
    'meta_with_a_huge_vocab_size': (['--dataset=hugevocab'], "data/hugevocab/meta.pkl has no vocab_size from 1 to 65536"),
    'meta_with_itos_not_a_dict': (['--dataset=itos_not_a_dict'], "data/itos_not_a_dict/meta.pkl has an itos and stoi "
                                                                 "that do not map the ids 0..1 to characters and back"),
    'resume_on_fewer_characters': (['--init_from=resume', '--out_dir=run', '--dataset=twelve'],
                                   "dataset=twelve has another vocabulary (12 characters) than the model from "
                                   "run/ckpt.pt learnt (65 characters)"),
    'resume_on_other_characters_of_the_same_number': (
        ['--init_from=resume', '--out_dir=run', '--dataset=other65'],
        "dataset=other65 has another vocabulary (65 characters) than the model from run/ckpt.pt learnt"),
    'resume_without_training_state': (['--init_from=resume', '--out_dir=weights_only'],
                                      "weights_only/ckpt.pt holds a model but not the training state to resume "
                                      "(optimizer, iter_num, best_val_loss missing)"),
    'checkpoint_with_crafted_model_args': (['--init_from=resume', '--out_dir=crafted_args'],
                                           "crafted_args/ckpt.pt has model_args this model cannot take"),
    'unreadable_last_beside_a_good_ckpt': (['--init_from=resume', '--out_dir=badlast'],
                                           "to resume from badlast/ckpt.pt instead, move badlast/last.pt away"),
    'gradient_accumulation_not_divisible': (['--gradient_accumulation_steps=4'],
                                            "gradient_accumulation_steps=4 is not divisible by the 3 processes; "
                                            "use a multiple of 3"),
    'cuda_unavailable': (['--device=cuda'], "device=cuda but CUDA is not available on this machine; use --device=cpu"),
    'mps_unavailable': (['--device=mps'], "device=mps but MPS is not available on this machine; use --device=cpu"),
    'wandb_without_login': (['--wandb_log=True'], "wandb cannot start (No API key configured"),
    'lr_decay_before_warmup_ends': (['--warmup_iters=10', '--lr_decay_iters=5'],
                                    "lr_decay_iters=5 is less than warmup_iters=10; the learning rate would decay "
                                    "before it has warmed up: set --lr_decay_iters to at least 10"),
    'unknown_dtype': (['--dtype=float8'], "dtype='float8' must be one of 'float32', 'bfloat16', 'float16', None "
                                          "(in --dtype=float8)"),
    'seed_beyond_what_torch_takes': (['--seed=99999999999999999999999'],
                                     "seed=99999999999999999999999 must be in [0, 4611686018427387904]"),
    'eval_iters_beyond_an_int64': (['--eval_iters=99999999999999999999999'],
                                   "eval_iters=99999999999999999999999 must be at least 1 (below 2**63)"),
    'nan_learning_rate': (['--learning_rate=1e999'], "learning_rate=inf must be at least 0.0 (finite)"),
    'a_model_larger_than_the_memory': (['--n_layer=100000', '--n_embd=4096', '--n_head=32'],
                                       "(2.01e+13 parameters) trained on micro-batches of 4 needs at least"),
    'a_batch_larger_than_the_memory': (['--batch_size=99999999999'],
                                       "(2.77e+04 parameters) trained on micro-batches of 99999999999 needs at least"),
    'unknown_init_from': (['--init_from=gpt3'],
                          "init_from='gpt3' is not 'scratch', 'resume', a GPT-2 model (gpt2, gpt2-medium, "
                          "gpt2-large, gpt2-xl) or a directory saved by transformers"),
}


def setup_case(case, tmp_path):
    """The arguments and environment of an ERRORS case, or a skip where this machine has what it lacks."""
    args, message = ERRORS[case]
    env = {}
    if case == 'unwritable_out_dir':
        args = [f'--out_dir={unwritable_dir(tmp_path)}']
    if case == 'gradient_accumulation_not_divisible':
        env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='3')  # as torchrun --nproc_per_node=3 starts process 0
    if case == 'cuda_unavailable' and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == 'mps_unavailable' and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    return args, message, env


@pytest.mark.parametrize('case', [case for case in ERRORS if case != 'wandb_without_login'])
def test_bad_input_gives_one_line_error_and_changes_nothing(case, workspace, char_data_root, tmp_path):
    args, message, env = setup_case(case, tmp_path)
    before = snapshot(workspace, char_data_root, tmp_path)
    error = run_in_process('train.py', *TINY, *args, cwd=workspace, env=env).error
    assert error is not None and message.format(ws=workspace) in error, error
    assert '\n' not in error
    assert snapshot(workspace, char_data_root, tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize('case', ['unknown_key', 'resume_on_fewer_characters', 'wandb_without_login'])
def test_a_process_shows_the_error_in_one_line_and_exits_1(case, workspace, char_data_root, tmp_path):
    args, message, env = setup_case(case, tmp_path)
    if case == 'wandb_without_login':  # online mode, no API key (HOME holds none), no network
        env = dict(WANDB_MODE='online', HOME=str(tmp_path), WANDB_DIR=str(tmp_path), WANDB_API_KEY='',
                   HTTPS_PROXY='http://127.0.0.1:9', HTTP_PROXY='http://127.0.0.1:9')
    before = snapshot(workspace, char_data_root, tmp_path)
    proc = run_script('train.py', *TINY, *args, cwd=workspace, env=env, check=False)
    assert_user_error(proc, "error: " + message)
    assert snapshot(workspace, char_data_root, tmp_path) == before
