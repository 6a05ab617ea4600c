"""A torchrun worker for test_ddp.py: two processes whose weights differ in one element of one tensor, by the
smallest step a float32 can take, ask parallel.check_weights_identical whether they agree; then how much memory the
check takes for a layer of 256 MB. Rank 0 prints what each process found, one line each."""

import resource
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, sys.argv[1]) # the repo
import parallel
from model import GPT, GPTConfig


def report(line):
    lines = [None] * dist.get_world_size()
    dist.all_gather_object(lines, line)
    if dist.get_rank() == 0:
        print('\n'.join(f"rank {rank}: {line}" for rank, line in enumerate(lines)), flush=True)


dist.init_process_group('gloo')
torch.manual_seed(0) # the same weights in both processes
model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65, bias=False, dropout=0.0))
if dist.get_rank() == 1:
    with torch.no_grad():
        weight = model.transformer.h[1].mlp.c_fc.weight
        weight[3, 5] = torch.nextafter(weight[3, 5], torch.tensor(1.0))
try:
    parallel.check_weights_identical(model)
    report("identical")
except RuntimeError as e:
    report(str(e))

layer = torch.nn.Linear(8192, 8192, bias=False)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
parallel.check_weights_identical(layer)
extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kb) // 1024
report(f"the check of 256 MB of weights took {extra_mb} MB more")
dist.destroy_process_group()
