"""
Muon's Newton-Schulz on the weight matrices of a GPT's Blocks: one matrix at a time, as torch.optim.Muon steps,
against optimizers.orthogonalise, which computes the matrices of one shape as one batch (what --optimizer=muon runs).
Prints the milliseconds of each for one step (the median of --rounds, in turns) and whether every result is the
same, bit for bit.
$ python bench/newton_schulz.py                                   # the CPU quick start's model: 4 layers, 128 wide
$ python bench/newton_schulz.py --n_layer=12 --n_embd=768 --device=cuda --dtype=bfloat16    # GPT-2 (124M)
"""

import os
import statistics
import sys
import time
from typing import Literal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) # the repository's modules
import errors  # noqa: E402
errors.install()
import torch  # noqa: E402

import hardware  # noqa: E402
from configurator import at_least, configure  # noqa: E402
from optimizers import newton_schulz, orthogonalise  # noqa: E402

# -----------------------------------------------------------------------------
n_layer: at_least(1) = 4
n_embd: at_least(1) = 128
device: str = 'cpu'
dtype: Literal['float32', 'bfloat16'] = 'float32' # what Newton-Schulz computes in (bfloat16 where the run does)
rounds: at_least(1) = 20
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------

# a Block's matrices: attention's c_attn (Q, K and V, orthogonalised as 3 parts) and c_proj, the MLP's c_fc and c_proj
torch.manual_seed(0)
shapes = [(3 * n_embd, n_embd), (n_embd, n_embd), (4 * n_embd, n_embd), (n_embd, 4 * n_embd)] * n_layer
parts = [3, 1, 1, 1] * n_layer
matrices = [torch.randn(shape, device=device) for shape in shapes]
settings = torch.optim.Muon([torch.zeros(2, 2, requires_grad=True)]).defaults # torch's coefficients, steps and eps
ns = (settings['ns_coefficients'], settings['ns_steps'], settings['eps'], getattr(torch, dtype))


def one_by_one():
    return [torch.cat([newton_schulz(part[None], *ns)[0] for part in matrix.chunk(n)])
            for matrix, n in zip(matrices, parts)]


def batched():
    return orthogonalise(matrices, parts, *ns)


def timed(fn):
    hardware.synchronize(device)
    t0 = time.perf_counter()
    fn()
    hardware.synchronize(device)
    return (time.perf_counter() - t0) * 1000


same = all(torch.equal(a, b) for a, b in zip(one_by_one(), batched())) # and a warm-up for both
times = {fn: [] for fn in (one_by_one, batched)}
for _ in range(rounds):
    for fn in times:
        times[fn].append(timed(fn))
alone, together = (statistics.median(t) for t in times.values())
print(f"Newton-Schulz of {sum(parts)} matrices ({n_layer} layers of {n_embd}, Q, K and V apart) in {dtype} on "
      f"{device}: one by one {alone:.1f} ms, batched by shape {together:.1f} ms ({together / alone:.2f}x); "
      f"the same results bit for bit: {same}")
