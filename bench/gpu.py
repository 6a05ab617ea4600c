"""
One command that measures a GPU, in under 10 minutes on one H100, and prints one table:
$ python bench/gpu.py --nanogpt=/path/to/nanoGPT   # a checkout of github.com/karpathy/nanoGPT, for its bench.py
1. tests/test_cuda.py (the CUDA-only tests);
2. training GPT-2 124M (bfloat16, compiled, 12 x 1024 tokens an iteration, random tokens): ms/iter, tokens/s, MFU
   and peak memory, by bench.py with AdamW and with Muon, beside nanoGPT's own bench.py in the same run (its MFU is
   against an A100's 312 TFLOP/s: re-based here to this device's peak);
3. AdamW against Muon for --steps steps of GPT-2 124M (config/train_gpt2_fineweb.py and ..._muon.py, their learning
   rates and schedule shrunk to the steps) on web-like text made here (bench/prepare_web.py's documents through
   data/fineweb/prepare.py; the machine need not reach FineWeb-Edu, but needs tiktoken's GPT-2 files, see
   docs/offline.md): the val loss each ends at, and the step where Muon reaches AdamW's final val loss;
4. sampling at batch 1 and 10 (bench.py --mode=sample): tokens/s and peak memory.
Each is a process of its own, run one after another. Without --nanogpt, nanoGPT's column is left out.
--small=True runs every step at a tiny size on any device, in seconds (the tests run it on CPU, so that it cannot rot).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, repo)
import errors  # noqa: E402
errors.install()
import hardware  # noqa: E402
from configurator import at_least, configure  # noqa: E402
from errors import UserError  # noqa: E402
from prepare_web import make_dataset  # noqa: E402
from provenance import device_name  # noqa: E402

# -----------------------------------------------------------------------------
nanogpt: str = '' # a checkout of nanoGPT to time its bench.py beside ours; '' leaves that column out
device: str = hardware.default_device() # 'cuda' is what this measures; other devices run with --small=True
small: bool = False # every step at a tiny size, in seconds: the tests' mode, on any device
steps: at_least(1) = 250 # AdamW against Muon: iterations of each
mb: at_least(1) = 40 # megabytes of web-like text for them (about 10M tokens: no token is read twice)
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------

if nanogpt and not all(os.path.isfile(os.path.join(nanogpt, f)) for f in ('bench.py', 'model.py', 'configurator.py')):
    raise UserError(f"--nanogpt={nanogpt!r} is not a checkout of nanoGPT (no bench.py, model.py, configurator.py); "
                    f"git clone https://github.com/karpathy/nanoGPT, or leave --nanogpt out")
cuda = device.startswith('cuda')
dtype = 'bfloat16' if cuda else 'float32'
TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32'] if small else []
BENCH = ['--real_data=False', f'--device={device}', f'--dtype={dtype}', f'--compile={cuda}', '--batch_size=12',
         *(['--block_size=32', '--burn_in_iters=2', '--timed_iters=3'] if small else [])]
rows = [] # (what, ours, nanoGPT's)


def run(what, command, cwd=repo, timeout=900):
    """Runs command (a list) in cwd; returns its stdout; a failure ends this script in one line."""
    print(f"{what} ...", file=sys.stderr, flush=True)
    start = time.time()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and not command[-1].endswith('test_cuda.py'):
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ['?']
        raise UserError(f"{what} failed ({' '.join(command[1:3])}...): {tail[0]}")
    print(f"{what}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    return proc.stdout


def figure(pattern, text):
    match = re.search(pattern, text)
    if not match:
        raise UserError(f"no {pattern!r} in the output:\n{text[-2000:]}")
    return float(match.group(1).replace(',', ''))


def tests():
    stdout = run("tests/test_cuda.py", [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                                        os.path.join(repo, 'tests', 'test_cuda.py')])
    summary = stdout.strip().splitlines()[-1] if stdout.strip() else '?'
    rows.append(("tests/test_cuda.py", re.sub(r'=+', '', summary).strip(), ''))


def training():
    ours = {}
    for optimizer in ('adamw', 'muon'):
        out = run(f"bench.py, {optimizer}", [sys.executable, 'bench.py', *BENCH, *TINY, f'--optimizer={optimizer}'])
        ours[optimizer] = dict(ms=figure(r"time per iteration: ([\d.]+)ms", out),
                               tokens=figure(r"tokens/s: ([\d,]+)", out), mfu=figure(r"MFU: ([\d.]+)%", out),
                               memory=figure(r"peak memory: ([\d.]+) GiB", out),
                               peak=figure(r"device peak: ([\d.]+) TFLOP/s", out) * 1e12)
    theirs = dict(ms='', tokens='', mfu='')
    if nanogpt:
        # nanoGPT's bench.py takes its own few settings (with --small, a stand-in that takes a model's sizes, as
        # this repo's bench.py: nanoGPT's own needs CUDA), and reads configurator.py from where it runs
        args = [f'--{a}' for a in ('real_data=False', f'device={device}', f'dtype={dtype}', f'compile={cuda}',
                                   'batch_size=12')]
        out = run("nanoGPT's bench.py", [sys.executable, 'bench.py', *args, *TINY], cwd=nanogpt)
        ms = figure(r"time per iteration: ([\d.]+)ms", out)
        theirs = dict(ms=f"{ms:.1f}", tokens=f"{12 * (32 if small else 1024) / ms * 1000:,.0f}", # its MFU is against
                      mfu=f"{figure(r'MFU: ([0-9.]+)%', out) * 312e12 / ours['adamw']['peak']:.1f}%") # an A100's peak
    for optimizer, o in ours.items():
        beside = theirs if optimizer == 'adamw' else dict(ms='', tokens='', mfu='') # nanoGPT's is AdamW's
        rows.append((f"training, {optimizer}: ms/iter", f"{o['ms']:.1f}", beside['ms']))
        rows.append((f"training, {optimizer}: tokens/s", f"{o['tokens']:,.0f}", beside['tokens']))
        rows.append((f"training, {optimizer}: MFU", f"{o['mfu']:.1f}%", beside['mfu']))
        rows.append((f"training, {optimizer}: peak memory", f"{o['memory']:.2f} GiB", ''))


def adamw_against_muon(workspace):
    make_dataset(os.path.join(workspace, 'data', 'web'), 2 if small else mb)
    shape = TINY + ['--batch_size=4', '--gradient_accumulation_steps=1'] if small else \
        ['--batch_size=16', '--gradient_accumulation_steps=2']
    schedule = [f'--max_iters={steps}', f'--lr_decay_iters={steps}', f'--warmup_iters={max(1, steps // 10)}',
                f'--eval_interval={max(1, steps // 10)}', f'--eval_iters={2 if small else 20}', '--log_interval=10']
    results = {}
    for optimizer, config in (('adamw', 'train_gpt2_fineweb.py'), ('muon', 'train_gpt2_fineweb_muon.py')):
        out_dir = os.path.join(workspace, optimizer)
        start = time.time()
        run(f"train.py, {optimizer}, {steps} steps",
            [sys.executable, os.path.join(repo, 'train.py'), os.path.join(repo, 'config', config), '--dataset=web',
             '--wandb_log=False', '--hellaswag=False', f'--device={device}', f'--dtype={dtype}', f'--compile={cuda}',
             *shape, *schedule, f'--out_dir={out_dir}'], cwd=workspace)
        with open(os.path.join(out_dir, 'log.jsonl')) as f:
            records = [json.loads(line) for line in f]
        results[optimizer] = ({r['iter']: r['val_loss'] for r in records if 'val_loss' in r}, time.time() - start)
    (adamw, adamw_s), (muon_evals, muon_s) = results['adamw'], results['muon']
    target = adamw[max(adamw)]
    reached = next((i for i, loss in sorted(muon_evals.items()) if loss <= target), None)
    rows.append((f"{steps} steps on web-like text: AdamW's final val loss", f"{target:.4f} ({adamw_s:.0f} s)", ''))
    rows.append((f"{steps} steps on web-like text: Muon's final val loss",
                 f"{muon_evals[max(muon_evals)]:.4f} ({muon_s:.0f} s)", ''))
    rows.append(("Muon reaches AdamW's final val loss at step", str(reached), ''))


def sampling():
    args = [*TINY, '--vocab_size=100', '--max_new_tokens=20'] if small else []
    out = run("bench.py --mode=sample", [sys.executable, 'bench.py', '--mode=sample', f'--device={device}',
                                         f'--dtype={dtype}', f'--compile={cuda}', '--num_samples=10', *args])
    for rows_, what in ((1, "batch 1 with KV cache"), (10, "batch 10 with KV cache")):
        rows.append((f"sampling, batch {rows_}: tokens/s", f"{figure(what + r': +([0-9.]+) tokens/s', out):,.1f}", ''))
    rows.append(("sampling: peak memory", f"{figure(r'peak memory: ([0-9.]+) GiB', out):.2f} GiB", ''))


if __name__ == '__main__':
    start = time.time()
    tests()
    training()
    with tempfile.TemporaryDirectory() as workspace:
        adamw_against_muon(workspace)
    sampling()
    print(f"{device_name(device)}, {dtype}{', compiled' if cuda else ''}{', small sizes' if small else ''}; "
          f"GPT-2 124M{' shrunk' if small else ''}; {time.time() - start:.0f} s in all")
    width = max(len(what) for what, *_ in rows)
    print(f"| {'measurement':{width}} | ours | nanoGPT |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for what, ours, theirs in rows:
        print(f"| {what:{width}} | {ours} | {theirs} |")
