"""
Muon against AdamW: iterations, tokens and time to the same val loss, with the defaults of --optimizer=muon.
$ python bench/muon.py                  # the CPU quick start, run where train.py runs (data/shakespeare_char prepared)
$ python bench/muon.py --task=web       # a GPT-2-BPE model on web-like text, prepared here by data/fineweb/prepare.py
Every run is a whole `python train.py` process.
1. The AdamW recipe (quickstart: config/train_shakespeare_char_cpu.py as it is; web: WEB below) sets the target: its
   final val loss.
2. AdamW at each of --adamw_lrs (min_lr a tenth of each), for a fair baseline: AdamW at its best learning rate,
   not only at the recipe's.
3. Muon with the defaults of --optimizer=muon, the recipe otherwise unchanged.
   These runs evaluate every --eval_interval iterations on the same val windows (train.py draws the same eval_iters
   batches at every evaluation, and evaluating changes nothing in training), to find the first iteration at or
   below the target; they run --jobs at a time, untimed.
4. Timed in turns, --rounds times, each round starting with the other: the AdamW recipe against Muon stopped at the
   iteration where it reached the target (--max_iters=N: the schedule depends on lr_decay_iters, so this is the
   same run up to N, ending with its evaluation there), both evaluating as the recipe does. Each round's ratio of
   wall times, their median, the ratio of the processes' CPU seconds (user and system: what a busy host disturbs
   least, with OMP_NUM_THREADS=1 not at all), and the cost of an iteration (the median of log.jsonl's dt_ms,
   evaluations excluded).
The web-like text is bench/prepare_web.py's: the installed Python packages' sources and documentation, cut into
documents of 500 to 8000 characters (real text, but more code than the web has), tokenized by the data scripts' own
pipeline.
"""

import glob
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, repo)
import errors  # noqa: E402
errors.install()
from configurator import at_least, configure  # noqa: E402
from errors import UserError  # noqa: E402
from prepare_web import make_dataset  # noqa: E402

# -----------------------------------------------------------------------------
task: Literal['quickstart', 'web'] = 'quickstart' # 'quickstart': the CPU quick start, timed; 'web': a GPT-2-BPE model of CPU size on web-like text
adamw_lrs: tuple = (2e-3, 4e-3) # AdamW's learning rates tried beside the recipe's, each with min_lr a tenth of it
eval_interval: at_least(1) = 25 # how often the untimed runs evaluate, to find where each reaches the target
rounds: at_least(0) = 2 # rounds of timed runs in turns (0: none)
jobs: at_least(1) = 2 # untimed runs at once
overrides: str = '' # more train.py arguments for every run, e.g. --max_iters=200 --lr_decay_iters=200 for a quick look
mb: at_least(1) = 30 # web: megabytes of web-like text
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------

QUICKSTART = [os.path.join(repo, 'config', 'train_shakespeare_char_cpu.py')]
# web: GPT-2's vocabulary and a model of CPU size, 1,024 tokens an iteration; AdamW as GPT-2's recipe (betas 0.9,
# 0.95, weight decay 0.1) at 2e-3, the best of the sweep in docs/muon.md
WEB = ['--dataset=web', '--device=cpu', '--compile=False', '--n_layer=4', '--n_head=4', '--n_embd=128',
       '--block_size=128', '--batch_size=8', '--gradient_accumulation_steps=1', '--dropout=0.0', '--max_iters=1500',
       '--lr_decay_iters=1500', '--warmup_iters=100', '--learning_rate=2e-3', '--min_lr=2e-4', '--eval_interval=250',
       '--eval_iters=20', '--log_interval=10', '--always_save_checkpoint=False']


def train(workspace, cwd, name, recipe, args, threads=None):
    """One train.py process of the recipe, --overrides and args, to its end: its wall and CPU seconds, {iter: val
    loss}, the iterations' times in ms and the tokens of an iteration."""
    out_dir = os.path.join(workspace, name)
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(repo, 'train.py'), *recipe, *shlex.split(overrides), *args,
                           f'--out_dir={out_dir}'], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN) # the children that ended meanwhile: for a timed run, it alone
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise UserError(f"the run '{name}' failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        records = [json.loads(line) for line in f]
    shutil.rmtree(out_dir) # its checkpoints are not needed, and the next timed run starts in a new out_dir
    steps = [r for r in records if 'loss' in r]
    return dict(seconds=seconds, cpu=cpu, evals={r['iter']: r['val_loss'] for r in records if 'val_loss' in r},
                ms=[r['dt_ms'] for r in steps[5:]], tokens_per_iter=steps[0]['tokens'])


def reached(evals, target):
    """The first evaluated iteration at or below target, or None."""
    return next((i for i, loss in sorted(evals.items()) if loss <= target), None)


if __name__ == '__main__':
    with tempfile.TemporaryDirectory() as workspace:
        if task == 'web':
            cwd, recipe = workspace, WEB
            print(f"preparing {mb} MB of web-like text ...", file=sys.stderr)
            make_dataset(os.path.join(workspace, 'data', 'web'), mb)
        else:
            cwd, recipe = os.getcwd(), QUICKSTART
            if not glob.glob(os.path.join('data', 'shakespeare_char', 'val.bin')):
                raise UserError("no data/shakespeare_char here: run python data/shakespeare_char/prepare.py first, "
                                "then this from the same directory")
        frequent = [f'--eval_interval={eval_interval}']
        untimed = {'AdamW recipe': frequent, 'Muon': frequent + ['--optimizer=muon']}
        for lr in adamw_lrs:
            untimed[f'AdamW lr {lr:g}'] = frequent + [f'--learning_rate={lr}', f'--min_lr={lr / 10}']
        threads = max(1, (os.cpu_count() or 1) // jobs)
        print(f"{len(untimed)} untimed runs, {jobs} at a time ...", file=sys.stderr)
        with ThreadPoolExecutor(jobs) as pool:
            results = dict(zip(untimed, pool.map(lambda item: train(workspace, cwd, item[0].replace(' ', '_'),
                                                                     recipe, item[1], threads), untimed.items())))
        recipe_evals = results['AdamW recipe']['evals']
        target = recipe_evals[max(recipe_evals)]
        tokens_per_iter = results['AdamW recipe']['tokens_per_iter']
        print(f"target: val loss {target:.4f}, the AdamW recipe's at its last iteration, {max(recipe_evals)}")
        print(f"{'run':18}{'val at the end':>16}{'reaches the target at':>23}{'tokens':>14}")
        for name, result in results.items():
            at = reached(result['evals'], target)
            print(f"{name:18}{result['evals'][max(result['evals'])]:>16.4f}{str(at):>23}"
                  f"{'' if at is None else f'{at * tokens_per_iter:,}':>14}")
        muon_at = reached(results['Muon']['evals'], target)
        adamw_at = {name: reached(r['evals'], target) for name, r in results.items() if name.startswith('AdamW')}
        best = min((at, name) for name, at in adamw_at.items() if at is not None)
        if muon_at is None:
            print("Muon did not reach the target")
        else:
            print(f"Muon reaches it in {muon_at / adamw_at['AdamW recipe']:.2f}x the tokens of the AdamW recipe, "
                  f"{muon_at / best[0]:.2f}x those of the best AdamW ({best[1]}, at iteration {best[0]})")
        if muon_at is None or not rounds:
            sys.exit()

        timed = {'AdamW recipe': [], 'Muon': ['--optimizer=muon', f'--max_iters={muon_at}']}
        seconds, cpu, ms = ({name: [] for name in timed} for _ in range(3))
        for r in range(rounds):
            for name in (list(timed) if r % 2 == 0 else list(timed)[::-1]): # each round starts with the other
                result = train(workspace, cwd, 'timed', recipe, timed[name])
                seconds[name].append(result['seconds'])
                cpu[name].append(result['cpu'])
                ms[name] += result['ms']
            print(f"round {r + 1}: AdamW recipe {seconds['AdamW recipe'][-1]:.1f} s, Muon to iteration {muon_at} "
                  f"{seconds['Muon'][-1]:.1f} s: {seconds['Muon'][-1] / seconds['AdamW recipe'][-1]:.2f}x; CPU "
                  f"{cpu['AdamW recipe'][-1]:.1f} s and {cpu['Muon'][-1]:.1f} s: "
                  f"{cpu['Muon'][-1] / cpu['AdamW recipe'][-1]:.2f}x", flush=True)
        ratios = [m / a for m, a in zip(seconds['Muon'], seconds['AdamW recipe'])]
        per_iter = {name: statistics.median(ms[name]) for name in timed}
        print(f"median: Muon reaches the AdamW recipe's final val loss in {statistics.median(ratios):.2f}x its wall "
              f"time (whole processes, {rounds} rounds in turns), "
              f"{statistics.median(m / a for m, a in zip(cpu['Muon'], cpu['AdamW recipe'])):.2f}x its CPU time")
        print(f"an iteration: AdamW {per_iter['AdamW recipe']:.1f} ms, Muon {per_iter['Muon']:.1f} ms "
              f"({per_iter['Muon'] / per_iter['AdamW recipe']:.2f}x; medians of log.jsonl's dt_ms)")
