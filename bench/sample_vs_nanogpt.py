"""
Whole processes of `python sample.py --num_samples=10 --max_new_tokens=256` against nanoGPT's own sample.py, on a
GPT-2-small-sized checkpoint (124M, random weights, GPT-2 BPE, float32) written for both, timed in turns.
$ git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT   # anywhere outside this repo
$ python bench/sample_vs_nanogpt.py --nanogpt=/tmp/nanoGPT       # a round: ~3 minutes of nanoGPT on a 2-core CPU
nanoGPT draws its samples one after another, each the same work (its generate runs the whole context for every
token), so its ten are timed from two: its process runs with num_samples=2, its stdout read line by line as it
comes, and its time for ten is the whole process plus 8 more of its second sample, from the first sample's separator
line to the second's. (The first sample's time would also hold one-off costs, tiktoken's load and the first forward's
warm-up: a second or two, which nine copies would add to nanoGPT's side.) Ours runs the ten. Both report their
peak resident memory (of the process: the weights, the checkpoint's pages while read, the KV cache, torch itself).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import errors
errors.install()

import torch

from configurator import at_least, configure
from errors import UserError
from memory import wait_peak_rss
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
nanogpt: str = '' # a checkout of github.com/karpathy/nanoGPT: its sample.py, model.py and configurator.py run as they are
rounds: at_least(1) = 2 # turns of (ours, nanoGPT's)
num_samples: at_least(2) = 10
max_new_tokens: at_least(1) = 256
device: str = 'cpu'
seed: at_least(0) = 0 # of the random weights
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------
GB = 1e9
SEPARATOR = '---------------\n'

missing = [f for f in ('sample.py', 'model.py', 'configurator.py') if not os.path.isfile(os.path.join(nanogpt, f))]
if missing:
    raise UserError(f"--nanogpt={nanogpt!r} is not a checkout of nanoGPT (no {', '.join(missing)}); clone "
                    f"https://github.com/karpathy/nanoGPT outside this repo and pass its path")


def write_checkpoint(out_dir):
    """ckpt.pt of a GPT-2-small-sized model as nanoGPT's train.py writes it, less the optimizer: both scripts read it,
    and with no data/openwebtext/meta.pkl beside either, both use GPT-2's BPE."""
    torch.manual_seed(seed)
    model_args = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=True, vocab_size=50304, dropout=0.0)
    model = GPT(GPTConfig(**model_args))
    with torch.no_grad(): # ids past GPT-2's 50257 pad the vocabulary: training gives them no weight, nor do we here
        model.transformer.wte.weight[50257:] = 0 # (sampled, tiktoken could not decode them in nanoGPT)
    torch.save({'model': model.state_dict(), 'model_args': model_args, 'config': {'dataset': 'openwebtext'}},
               os.path.join(out_dir, 'ckpt.pt'))


def run(command, cwd):
    """Runs command in cwd; returns its seconds, its peak resident memory in bytes, and each line it printed (on
    stdout or stderr: ours prints its notes there) with the seconds since the start when it came."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'} # each line as it is printed, not when a pipe's buffer fills
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - t0, line) for line in proc.stdout))
    reader.start() # while this thread follows the process's memory
    returncode, peak = wait_peak_rss(proc)
    reader.join()
    seconds = time.perf_counter() - t0
    if returncode != 0:
        raise UserError(f"{' '.join(command)} exited {returncode}")
    return seconds, peak, lines


def separators(lines, expected, who):
    stamps = [t for t, line in lines if line == SEPARATOR]
    if len(stamps) != expected:
        raise UserError(f"{who} printed {len(stamps)} samples, not {expected}")
    return stamps


with tempfile.TemporaryDirectory() as out_dir:
    print(f"writing a GPT-2-small-sized checkpoint (random weights) to {out_dir}/ckpt.pt ...")
    write_checkpoint(out_dir)
    common = [f'--out_dir={out_dir}', f'--device={device}', '--dtype=float32', f'--max_new_tokens={max_new_tokens}']
    ours_command = [sys.executable, os.path.join(REPO, 'sample.py'), *common, f'--num_samples={num_samples}']
    # nanoGPT's sample.py reads configurator.py from the current directory
    nanogpt_command = [sys.executable, 'sample.py', *common, '--num_samples=2']
    print(f"ours:    {' '.join(ours_command)}\nnanoGPT: (in {nanogpt}) {' '.join(nanogpt_command)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    ratios, ours_times, nanogpt_times = [], [], []
    for turn in range(rounds): # in turns, so that a machine busy with something else slows both alike
        ours, ours_peak, lines = run(ours_command, out_dir)
        separators(lines, num_samples, "sample.py")
        loaded = next(t for t, line in lines if line.startswith("number of parameters")) # the model, built last
        whole, nanogpt_peak, lines = run(nanogpt_command, nanogpt)
        first, second = separators(lines, 2, "nanoGPT's sample.py")
        one = second - first
        nanogpt_ten = whole + (num_samples - 2) * one
        ratios.append(nanogpt_ten / ours)
        ours_times.append(ours)
        nanogpt_times.append(nanogpt_ten)
        print(f"round {turn + 1}: ours {ours:.1f} s for {num_samples} samples ({loaded:.1f} s to start generating), "
              f"peak {ours_peak / GB:.2f} GB; nanoGPT {whole:.1f} s for 2 ({one:.1f} s the second), "
              f"so {nanogpt_ten:.0f} s for {num_samples}, peak {nanogpt_peak / GB:.2f} GB; {ratios[-1]:.1f}x")
    print(f"{num_samples} samples of {max_new_tokens} tokens, whole processes: ours {statistics.median(ours_times):.1f} s, "
          f"nanoGPT's {statistics.median(nanogpt_times):.0f} s; {statistics.median(ratios):.1f}x "
          f"(median of {rounds} rounds)")
