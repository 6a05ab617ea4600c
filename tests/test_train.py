"""train.py end to end on a tiny model and the real shakespeare_char data: checkpoints, losses, log.jsonl, the
learning-rate schedule, and each way a run can start (scratch, resume, a nanoGPT checkpoint, a GPT-2 directory)."""

import json
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import tiktoken
import torch

from checkpoint import load_checkpoint, model_from_checkpoint, model_path
from eval_hellaswag import evaluate_hellaswag, load_examples
from model import GPT, GPTConfig
from helpers import REPO, SHAKESPEARE, TINY, eval_losses, iter_losses, read_log, run_in_process, train, train_here


# -----------------------------------------------------------------------------
# one run from scratch, looked at by several tests: 12 iterations, warmup 3, cosine decay to iter 9, evals every 4

SCRATCH_ARGS = ['--max_iters=12', '--eval_interval=4', '--warmup_iters=3', '--lr_decay_iters=9', '--learning_rate=1e-2',
                '--min_lr=1e-3']


@pytest.fixture(scope="module")
def scratch(char_data_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("scratch") / "out"
    return out_dir, train_here(char_data_root, out_dir, *SCRATCH_ARGS)


def test_run_from_scratch_writes_checkpoint_of_last_iteration(scratch):
    out_dir, _ = scratch
    checkpoint = load_checkpoint(out_dir / 'ckpt.pt')
    assert checkpoint['iter_num'] == 12
    assert {'model', 'optimizer', 'model_args', 'iter_num', 'best_val_loss', 'config',
            'scaler', 'rng', 'provenance'} <= checkpoint.keys()
    assert checkpoint['model_args'] == dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=False,
                                            vocab_size=65, dropout=0.0)


def test_loss_falls(scratch):
    out_dir, _ = scratch
    records = read_log(out_dir)
    losses, evals = iter_losses(records), eval_losses(records)
    assert losses[11] < losses[0] - 0.3
    assert evals[12][1] < evals[0][1] - 0.3


def test_log_has_a_record_every_iteration_and_every_eval(scratch):
    out_dir, _ = scratch
    records = read_log(out_dir)
    assert records[0].keys() == {'provenance', 'resumed_from'} and records[0]['resumed_from'] is None
    iters = [r for r in records if 'loss' in r]
    assert [r['iter'] for r in iters] == list(range(12))
    assert all(set(r) == {'iter', 'loss', 'lr', 'dt_ms', 'mfu', 'tokens'} for r in iters)
    assert [r['tokens'] for r in iters] == [(i + 1) * 4 * 32 for i in range(12)]
    assert all(r['dt_ms'] > 0 for r in iters)
    assert [r['mfu'] is None for r in iters] == [True] * 5 + [False] * 7  # measured from the 6th iteration on
    assert list(eval_losses(records)) == [0, 4, 8, 12]
    evals = [r for r in records if 'val_loss' in r]
    assert [r['tokens'] for r in evals] == [i * 4 * 32 for i in (0, 4, 8, 12)]  # plot.py puts them on its tokens axis


def test_stdout_keeps_nanogpt_line_formats(scratch):
    stdout = scratch[1].stdout
    assert len(re.findall(r"^iter \d+: loss \d+\.\d{4}, time \d+\.\d{2}ms, ", stdout, re.M)) == 12
    # nanoGPT's step line, then the val loss in bits per byte of text
    assert len(re.findall(r"^step \d+: train loss \d+\.\d{4}, val loss \d+\.\d{4}, val bpb \d+\.\d{4}$", stdout,
                          re.M)) == 4


def test_iter_lines_say_how_far_the_run_is_and_show_mfu_once_measured(scratch):
    lines = re.findall(r"^iter (\d+): loss [\d.]+, time [\d.]+ms(, mfu \d+\.\d\d%)?, (.*)$", scratch[1].stdout, re.M)
    assert [int(it) for it, _, _ in lines] == list(range(12))
    assert [bool(mfu) for _, mfu, _ in lines] == [False] * 5 + [True] * 7  # as in log.jsonl: from the 6th on
    assert lines[0][2] == "8.3% of 12 iters"  # the rate is not known after the first iteration
    assert re.fullmatch(r"16\.7% of 12 iters, \d+s left", lines[1][2])
    assert re.fullmatch(r"100\.0% of 12 iters, 0s left", lines[11][2])


def test_the_end_of_a_run_says_what_it_reached_and_what_to_run_next(scratch):
    out_dir, result = scratch
    best = min(eval_losses(read_log(out_dir)).items(), key=lambda item: item[1][1])
    tail = result.stdout.splitlines()[-4:]
    assert re.fullmatch(r"training ended at iter 12 after \d+s, having trained on 1,536 tokens \(1,536 in all\)",
                        tail[0])
    assert tail[1] == f"best val loss {best[1][1]:.4f} at iter {best[0]}"
    assert tail[2] == f"the model is in {out_dir / 'ckpt.pt'}"
    assert tail[3] == (f"next: python sample.py --out_dir={out_dir}; python plot.py --out_dir={out_dir}; "
                       f"python export.py --out_dir={out_dir}")


def test_notes_go_to_stderr_and_stdout_holds_the_log(scratch):
    stdout, stderr = scratch[1].stdout, scratch[1].stderr
    assert "Overriding: max_iters = 12" in stderr and "number of parameters" in stderr
    assert all(re.match(r"(iter|step) \d+: |saving checkpoint|training ended|best val loss|the model is|next: ", line)
               for line in stdout.splitlines())


def test_provenance_in_log_and_checkpoint(scratch):
    out_dir, _ = scratch
    provenance = read_log(out_dir)[0]['provenance']
    assert provenance == load_checkpoint(out_dir / 'ckpt.pt')['provenance']
    assert provenance['config']['max_iters'] == 12 and provenance['config']['n_embd'] == 32
    assert provenance['torch'] == torch.__version__
    assert provenance['device'] == 'cpu' and provenance['device_name']
    assert provenance['dtype'] == 'float32'  # the default, resolved for the device after the overrides
    assert provenance['world_size'] == 1
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert provenance['git_commit'].removesuffix('-dirty') == head.stdout.strip()


# learning_rate 1e-2, min_lr 1e-3, warmup_iters 3, lr_decay_iters 9, worked out by hand
def test_lr_warms_up_linearly_from_above_zero(scratch):
    out_dir, _ = scratch
    lrs = [r['lr'] for r in read_log(out_dir) if 'lr' in r]
    assert lrs[:3] == pytest.approx([0.0025, 0.005, 0.0075], abs=1e-15)  # 1e-2 * (it + 1) / 4


def test_lr_decays_by_cosine_to_min_lr(scratch):
    out_dir, _ = scratch
    lrs = [r['lr'] for r in read_log(out_dir) if 'lr' in r]
    # 1e-3 + 9e-3 * (1 + cos(pi * k / 6)) / 2 for k = 0..5: cos is 1, 0.8660254, 0.5, 0, -0.5, -0.8660254
    assert lrs[3:9] == pytest.approx([0.01, 0.0093971143170, 0.00775, 0.0055, 0.00325, 0.0016028856830], abs=1e-13)


def test_lr_stays_at_min_lr_after_decay(scratch):
    out_dir, _ = scratch
    lrs = [r['lr'] for r in read_log(out_dir) if 'lr' in r]
    assert lrs[9:] == [0.001] * 3


# -----------------------------------------------------------------------------

def test_resume_continues_from_the_saved_iteration(char_data_root, scratch, tmp_path):
    out_dir = tmp_path / 'out'
    shutil.copytree(scratch[0], out_dir)
    train_here(char_data_root, out_dir, '--init_from=resume', '--max_iters=15', '--eval_interval=4')
    records = read_log(out_dir)
    resumed = records[[i for i, r in enumerate(records) if 'provenance' in r][1]:]
    assert [r['iter'] for r in resumed if 'loss' in r] == [12, 13, 14]
    assert load_checkpoint(out_dir / 'ckpt.pt')['iter_num'] == 15


def test_a_torn_last_line_of_the_log_is_repaired_and_said(char_data_root, scratch, tmp_path):
    # a power cut mid-line: half a record, and the block of NUL bytes a file system can leave at the end
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)
    with open(tmp_path / 'log.jsonl', 'ab') as f:
        f.write(b'{"iter": 12, "loss": 3.1' + b'\0' * 4096)
    stderr = train_here(char_data_root, tmp_path, '--init_from=resume', '--max_iters=13').stderr
    assert (f"{tmp_path / 'log.jsonl'}: removed a torn last line of 24 bytes, removed 4096 NUL bytes at its end "
            f"(left by a run that was cut off)") in stderr
    records = read_log(tmp_path)  # every line a record: the next run's first one is not glued to the torn line
    assert records[-1]['iter'] == 13 and [r for r in records if 'provenance' in r][-1]['resumed_from'] == 12


def test_token_ids_outside_the_vocabulary_met_in_a_run_stop_it_with_its_checkpoint_whole(char_data_root, scratch,
                                                                                          tmp_path, monkeypatch):
    # train.bin corrupt between what the start's check reads (here its first and last 16 tokens: at GPT-2's scale
    # it reads 4 MB of a file of gigabytes), met by the first batch of the resumed run
    import dataloader
    monkeypatch.setattr(dataloader, 'CHECKED_STRETCHES', 2)
    monkeypatch.setattr(dataloader, 'STRETCH_TOKENS', 16)
    shutil.copytree(char_data_root / 'data', tmp_path / 'data')
    train_bin = np.memmap(tmp_path / 'data' / 'shakespeare_char' / 'train.bin', dtype=np.uint16, mode='r+')
    train_bin[100:-100] = 1000
    train_bin.flush()
    shutil.copytree(scratch[0], tmp_path / 'out')
    before = (tmp_path / 'out' / 'ckpt.pt').read_bytes()
    result = run_in_process('train.py', f"--out_dir={tmp_path / 'out'}", '--init_from=resume', '--max_iters=20',
                            cwd=tmp_path)
    assert re.fullmatch(r"data/shakespeare_char/train\.bin holds token id 1000 at token [\d,]+, but its vocabulary has "
                        r"only 65 ids \(0\.\.64\): the files of the dataset do not belong together, or it is corrupt; "
                        r"prepare it again; stopped at iter 12 \(the checkpoint of iter 12 in .* is kept\): fix it, "
                        r"then go on with python train\.py --out_dir=.* --init_from=resume", result.error), result.error
    assert (tmp_path / 'out' / 'ckpt.pt').read_bytes() == before
    assert "step 12: the evaluation is skipped, as the run stops" in result.stdout


def test_a_run_of_iterations_far_longer_than_expected_says_so_with_a_command_of_minutes(char_data_root, tmp_path):
    # nanoGPT's 491,520 tokens an iteration (12 x 1024, 40 micro steps), on a CPU: minutes an iteration. Said, not
    # refused (max_iters=0: it evaluates once and ends)
    stderr = train_here(char_data_root, tmp_path, '--max_iters=0', '--eval_iters=1', '--n_layer=2', '--n_embd=256',
                        '--n_head=4', '--block_size=1024', '--batch_size=12', '--gradient_accumulation_steps=40').stderr
    assert re.search(r"^note: an iteration of this run will take about (\d+m\d\ds|\d+h\d\dm) on cpu ", stderr, re.M)
    assert "for a run of minutes here: python train.py config/train_shakespeare_char_cpu.py\n" in stderr
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == 0


def test_a_run_of_short_iterations_says_nothing_of_its_length(scratch):
    assert "note: an iteration" not in scratch[1].stderr


def test_resume_with_another_batch_shape_keeps_the_token_count_true_and_records_the_change(char_data_root, scratch,
                                                                                           tmp_path):
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)  # 12 iterations of 4 x 32 tokens
    assert load_checkpoint(tmp_path / 'ckpt.pt')['tokens'] == 12 * 128
    train_here(char_data_root, tmp_path, '--init_from=resume', '--max_iters=14', '--batch_size=8')
    records = read_log(tmp_path)
    assert {'iter': 12, 'tokens_per_iter': 256, 'was': 128} in records
    assert [r['tokens'] for r in records if 'loss' in r][-2:] == [12 * 128 + 256, 12 * 128 + 512]
    assert load_checkpoint(tmp_path / 'ckpt.pt')['tokens'] == 12 * 128 + 512


def test_nanogpt_checkpoint_resumes(char_data_root, scratch, tmp_path):
    # what nanoGPT's train.py saves: a compiled model's keys, best_val_loss a tensor, no RNG, scaler or provenance
    ours = load_checkpoint(scratch[0] / 'ckpt.pt')
    nanogpt = {'model': {'_orig_mod.' + k: v for k, v in ours['model'].items()}, 'optimizer': ours['optimizer'],
               'model_args': ours['model_args'], 'iter_num': 12, 'best_val_loss': torch.tensor(3.0),
               'config': {k: v for k, v in ours['config'].items() if k not in ('seed', 'hellaswag', 'hellaswag_file')}}
    (tmp_path / 'out').mkdir()
    torch.save(nanogpt, tmp_path / 'out' / 'ckpt.pt')
    stderr = train_here(char_data_root, tmp_path / 'out', '--init_from=resume', '--max_iters=14',
                        '--eval_interval=100').stderr
    assert "no RNG state" in stderr
    assert [r['iter'] for r in read_log(tmp_path / 'out') if 'loss' in r] == [12, 13]
    assert load_checkpoint(tmp_path / 'out' / 'ckpt.pt')['iter_num'] == 14


def test_best_val_loss_is_never_overwritten_by_a_worse_one(char_data_root, tmp_path):
    # a learning rate of 1 makes every step worse; always_save_checkpoint still saves at each eval
    train_here(char_data_root, tmp_path, '--learning_rate=1.0', '--decay_lr=False', '--max_iters=3', '--eval_interval=1',
          '--always_save_checkpoint=True')
    val = [v for _, v in eval_losses(read_log(tmp_path)).values()]
    assert val[0] < min(val[1:])
    checkpoint = load_checkpoint(tmp_path / 'ckpt.pt')
    assert checkpoint['iter_num'] == 3
    assert checkpoint['best_val_loss'] == val[0]


def test_without_always_save_ckpt_keeps_the_best_model_and_last_the_newest_state(char_data_root, scratch, tmp_path):
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)  # ckpt.pt of iter 12, the best so far
    best = load_checkpoint(tmp_path / 'ckpt.pt')
    # a learning rate of 1 makes every step worse: the eval at iter 14 does not improve
    stdout = train_here(char_data_root, tmp_path, '--init_from=resume', '--learning_rate=1.0', '--decay_lr=False',
                        '--max_iters=14', '--eval_interval=2', '--always_save_checkpoint=False').stdout
    assert f"saving checkpoint to {tmp_path / 'last.pt'} (end of training, iter 14)" in stdout
    ckpt, last = load_checkpoint(tmp_path / 'ckpt.pt'), load_checkpoint(tmp_path / 'last.pt')
    assert ckpt['iter_num'] == 12 and all(torch.equal(ckpt['model'][k], best['model'][k]) for k in best['model'])
    assert last['iter_num'] == 14 and last['best_val_loss'] == ckpt['best_val_loss']
    assert model_path(tmp_path) == str(tmp_path / 'ckpt.pt')  # sample.py samples the best model
    # resuming goes on from the newest state, and once an eval improves, ckpt.pt is the newest again
    train_here(char_data_root, tmp_path, '--init_from=resume', '--learning_rate=1e-2', '--max_iters=20',
          '--eval_interval=100', '--always_save_checkpoint=False', '--warmup_iters=0', '--lr_decay_iters=20')
    assert [r['iter'] for r in read_log(tmp_path) if 'loss' in r][-6:] == [14, 15, 16, 17, 18, 19]
    if eval_losses(read_log(tmp_path))[20][1] < ckpt['best_val_loss']:
        assert not (tmp_path / 'last.pt').exists() and load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == 20
    else:
        assert load_checkpoint(tmp_path / 'last.pt')['iter_num'] == 20


def test_checkpoint_interval_saves_between_evals(char_data_root, tmp_path):
    stdout = train_here(char_data_root, tmp_path, '--max_iters=7', '--eval_interval=100',
                        '--checkpoint_interval=3').stdout
    saves = re.findall(r"^saving checkpoint to .*/(\S+) \((.*), iter (\d+)\)$", stdout, re.M)
    assert saves == [('ckpt.pt', 'checkpoint_interval', '3'), ('ckpt.pt', 'checkpoint_interval', '6'),
                     ('ckpt.pt', 'val loss improved', '7')]


def test_resume_keeps_the_checkpoints_model_shape_and_records_it(char_data_root, scratch, tmp_path):
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)
    stderr = train_here(char_data_root, tmp_path, '--init_from=resume', '--max_iters=13', '--n_layer=3',
                        '--block_size=16').stderr
    assert "a resumed run keeps its model's shape: n_layer=2 (not 3), block_size=32 (not 16)" in stderr
    checkpoint = load_checkpoint(tmp_path / 'ckpt.pt')
    assert checkpoint['iter_num'] == 13
    assert checkpoint['config']['n_layer'] == 2 and checkpoint['config']['block_size'] == 32
    assert [r for r in read_log(tmp_path) if 'provenance' in r][-1]['provenance']['config']['n_layer'] == 2


def test_a_new_run_appends_to_the_log_of_its_out_dir(char_data_root, scratch, tmp_path):
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)
    before = (tmp_path / 'log.jsonl').read_text()
    train_here(char_data_root, tmp_path, '--eval_only=True')
    train_here(char_data_root, tmp_path, '--max_iters=1')
    records = read_log(tmp_path)
    assert (tmp_path / 'log.jsonl').read_text().startswith(before)
    assert len([r for r in records if 'provenance' in r]) == 3


def test_compile_defaults_to_off_on_cpu(char_data_root, tmp_path):
    result = train_here(char_data_root, tmp_path, '--max_iters=1', '--compile=None')
    assert "compiling the model" not in result.stdout + result.stderr
    assert read_log(tmp_path)[0]['provenance']['config']['compile'] is None


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(char_data_root, scratch, tmp_path):
    shutil.copytree(scratch[0], tmp_path, dirs_exist_ok=True)
    before = (tmp_path / 'ckpt.pt').read_bytes()
    # weights of size 1e30 overflow float32 in the next forward pass
    error = run_in_process('train.py', *TINY, f'--out_dir={tmp_path}', '--init_from=resume', '--learning_rate=1e30',
                           '--decay_lr=False', '--max_iters=20', '--eval_interval=100', cwd=char_data_root).error
    assert error == (f"loss is nan at iter 13: training diverged; lower --learning_rate "
                     f"(the checkpoint of iter 12 in {tmp_path} is kept)")
    assert (tmp_path / 'ckpt.pt').read_bytes() == before


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_weights_that_load_weights_only(char_data_root, scratch, tmp_path):
    proc = train(char_data_root, tmp_path, *SCRATCH_ARGS, '--max_iters=2', '--compile=True')
    assert "compiling the model" in proc.stderr
    eager, compiled = iter_losses(read_log(scratch[0])), iter_losses(read_log(tmp_path))
    assert compiled[0] == pytest.approx(eager[0], abs=1e-4) and compiled[1] == pytest.approx(eager[1], abs=1e-4)
    raw = torch.load(tmp_path / 'ckpt.pt', weights_only=True)  # not checkpoint.load_checkpoint, which strips prefixes
    assert raw['model'].keys() == GPT(GPTConfig(**raw['model_args'])).state_dict().keys()


def test_bfloat16_autocast_on_cpu(char_data_root, scratch, tmp_path):
    train_here(char_data_root, tmp_path, '--max_iters=1', '--dtype=bfloat16')
    fp32, bf16 = iter_losses(read_log(scratch[0]))[0], iter_losses(read_log(tmp_path))[0]  # same weights and batch
    assert bf16 != fp32  # bfloat16 matmuls round differently...
    assert bf16 == pytest.approx(fp32, abs=0.02)  # ...to about 3 significant digits


def test_float16_trains_with_a_grad_scaler_on_cpu_as_on_cuda(char_data_root, tmp_path):
    train_here(char_data_root, tmp_path, '--max_iters=2', '--dtype=float16')
    scaler = load_checkpoint(tmp_path / 'ckpt.pt')['scaler']
    assert scaler['scale'] == 65536.0 and scaler['_growth_tracker'] == 2  # two steps without an overflow
    train_here(char_data_root, tmp_path, '--max_iters=3', '--dtype=float16', '--init_from=resume')
    assert load_checkpoint(tmp_path / 'ckpt.pt')['scaler']['_growth_tracker'] == 3  # the resumed scaler went on


def wandb_history(run_file):
    """The history rows (dicts) in a wandb run file: a leveldb-style log of 32 KiB blocks of protobuf records."""
    from wandb.proto import wandb_internal_pb2
    raw, pos, parts, rows = run_file.read_bytes(), 7, [], []  # after a 7-byte ':W&B' header
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack('<IHB', raw[pos:pos + 7])
        parts.append(raw[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b''.join(parts))
            parts = []
            if record.WhichOneof('record_type') == 'history':
                rows.append({item.key or '/'.join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


@pytest.mark.slow
def test_wandb_offline_run_has_the_logged_metrics(char_data_root, tmp_path):
    (tmp_path / 'data').symlink_to(char_data_root / 'data')
    train(tmp_path, tmp_path / 'out', '--max_iters=2', '--eval_interval=2', '--wandb_log=True',
          '--wandb_run_name=tiny', env={'WANDB_MODE': 'offline'})
    run_files = list(tmp_path.glob('wandb/offline-run-*/run-*.wandb'))
    assert len(run_files) == 1
    rows = wandb_history(run_files[0])
    evals = eval_losses(read_log(tmp_path / 'out'))
    assert [(r['iter'], r['train/loss'], r['val/loss']) for r in rows if 'val/loss' in r] == \
           [(it, t, v) for it, (t, v) in evals.items()]
    assert [r['iter'] for r in rows if 'train/iter_loss' in r] == [0, 1]


@pytest.mark.slow
def test_finetune_from_local_gpt2_directory(char_data_root, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel  # slow to import: only here
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=65)).save_pretrained(
        tmp_path / 'gpt2-tiny')
    train_here(char_data_root, tmp_path / 'out', f'--init_from={tmp_path / "gpt2-tiny"}', '--max_iters=6',
          '--eval_interval=3', '--learning_rate=1e-2', '--dropout=0.1')
    checkpoint = load_checkpoint(tmp_path / 'out' / 'ckpt.pt')
    # GPT-2's own sizes, its bias and tanh GELU; the context cropped to our block_size
    assert checkpoint['model_args'] == dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True, vocab_size=65,
                                            dropout=0.1, gelu_approximate='tanh')
    val = [v for _, v in eval_losses(read_log(tmp_path / 'out')).values()]
    assert val[-1] < val[0] - 0.1


def test_hellaswag_scored_at_every_eval(tmp_path):
    # a GPT-2 BPE dataset: HellaSwag needs GPT-2's vocabulary
    tokens = np.array(tiktoken.get_encoding('gpt2').encode(SHAKESPEARE.read_text()[:50000]), dtype=np.uint16)
    (tmp_path / 'data' / 'bpe').mkdir(parents=True)
    tokens[:10000].tofile(tmp_path / 'data' / 'bpe' / 'train.bin')
    tokens[10000:].tofile(tmp_path / 'data' / 'bpe' / 'val.bin')
    examples = [{"ind": i, "activity_label": "Talking", "ctx_a": ctx, "ctx_b": "", "ctx": ctx, "split": "val",
                 "split_type": "indomain", "label": i % 4, "source_id": f"test~{i}",
                 "endings": ["the king speaks.", "my lord.", "and then a horse ran away", "thou art"]}
                for i, ctx in enumerate(["First Citizen:", "Before we proceed any further,", "Speak, speak.",
                                         "You are all resolved rather to die than to famish?"])]
    (tmp_path / 'hellaswag.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in examples))

    train_here(tmp_path, tmp_path / 'out', '--dataset=bpe', '--max_iters=2', '--eval_interval=2', '--hellaswag=True',
          f'--hellaswag_file={tmp_path / "hellaswag.jsonl"}')
    scores = [(r['hellaswag_acc'], r['hellaswag_acc_norm']) for r in read_log(tmp_path / 'out') if 'val_loss' in r]
    assert len(scores) == 2  # iters 0 and 2
    # the score of the model at iter 2, which the checkpoint holds
    model = model_from_checkpoint(load_checkpoint(tmp_path / 'out' / 'ckpt.pt'), 'ckpt.pt')
    result = evaluate_hellaswag(model, load_examples(str(tmp_path / 'hellaswag.jsonl')), 'cpu', torch.no_grad())
    assert scores[1] == (result['acc'], result['acc_norm']) and result['n'] == 4
