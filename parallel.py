"""Training on several processes (torchrun): the process group and its timeout, DDP or FSDP around the model (FSDP
built on the meta device, each process setting only its shards), gradient sync in gradient accumulation, each
process's share of the evaluation, the whole single-process state of a sharded model, and the check that
replicated weights stayed equal. Single-process runs pass through every function here unchanged."""

import copy
import datetime
import math
import os
import sys
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from hardware import PTDTYPE
from model import LayerNorm


def environment():
    """(under torchrun, rank, local rank, world size) of this process, as torchrun's environment gives them."""
    return 'RANK' in os.environ, int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0)), \
        int(os.environ.get('WORLD_SIZE', 1))


def restart():
    """(restart count, run id) under torchrun --max-restarts: how often its processes were started again, and the id
    shared by all restarts of one torchrun (None outside it)."""
    return int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)), os.environ.get('TORCHELASTIC_RUN_ID')


def init_process_group(backend, device, timeout, out_dir):
    """Joins the torchrun processes. A collective that waits more than timeout seconds on another process (dead or
    stuck) fails, and a failed collective ends this process with one line saying what to do, and exit code 1.
    nccl, the default backend, needs CUDA: off CUDA the processes take gloo."""
    if torch.device(device).type == 'cuda':
        torch.cuda.set_device(device)
    elif backend == 'nccl':
        print(f"nccl needs CUDA devices; using the gloo backend for device={device}")
        backend = 'gloo'
    timeout = datetime.timedelta(seconds=timeout)
    restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))
    if restart == 0:
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        # torchrun's store outlives a restart, with the dead processes' addresses in it: without keys of their own,
        # the new processes can read those and fail to connect to each other
        rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
        hosted_by_torchrun = os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True'
        store = dist.TCPStore(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']), world_size,
                              is_master=rank == 0 and not hosted_by_torchrun, timeout=timeout)
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f'restart_{restart}', store), rank=rank,
                                world_size=world_size, timeout=timeout)
    global _cpu_group
    # a stop is agreed on between micro steps with a CPU tensor: under nccl in a gloo group of its own, so that
    # asking costs no wait for the GPU's queued work
    _cpu_group = dist.new_group(backend='gloo') if dist.get_backend() != 'gloo' else None
    previous_hook = sys.excepthook # configurator's, which prints UserErrors

    def on_error(kind, error, traceback):
        # gloo raises a plain RuntimeError that names its own source file; NCCL (with TORCH_NCCL_BLOCKING_WAIT=1)
        # and the store raise DistError
        if not (issubclass(kind, dist.DistError) or (issubclass(kind, RuntimeError) and '/gloo/' in str(error))):
            previous_hook(kind, error, traceback)
            leave(130 if issubclass(kind, KeyboardInterrupt) else 1)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else kind.__name__
        print(f"error: process {dist.get_rank()} of {dist.get_world_size()}: another process died or did not answer "
              f"within dist_timeout={timeout.total_seconds():g} s ({reason}); the last checkpoint in {out_dir} is "
              f"kept: go on with --init_from=resume, or start torchrun with --max-restarts=N to restart by itself",
              file=sys.stderr)
        leave(1) # not sys.exit: tearing down a process group whose peer is gone can hang
    sys.excepthook = on_error


def leave(exit_code):
    """Ends this process without Python's finalization: gloo's worker threads may still be releasing the tensors of
    the last collectives, which takes the interpreter, and one that does so while it is torn down aborts the process
    (SIGABRT, "terminate called without an active exception"; seen here in 1 of ~20 runs, see pytorch/pytorch#179291).
    What the process writes is written already: the checkpoints and log.jsonl, line by line."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


def end(error=None):
    """The end of a torchrun process's run: it waits for the others (a process that leaves while another still writes
    the checkpoint can abort it, gloo), leaves the process group and exits (leave), with exit code 1 and error's line
    (from process 0) when the run ends on a fault."""
    dist.barrier()
    if error is not None and dist.get_rank() == 0:
        print(f"error: {error}", file=sys.stderr)
    dist.destroy_process_group()
    leave(0 if error is None else 1)


_cpu_group = None  # see init_process_group


def any_process(flag):
    """Whether flag is true in any process, in every process; flag alone without torchrun. Every process must ask
    at the same points of the run (a collective)."""
    if not dist.is_initialized():
        return flag
    flags = torch.tensor([float(flag)])
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=_cpu_group)
    return bool(flags.item())


def gather(value):
    """[value of process 0, value of process 1, ...]: every process's value, in every process; [value] alone."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


@contextmanager
def building(sharded):
    """Around the construction of a model that shard() will shard (sharded=True): on the meta device, where
    weights have a shape but no memory and draw no random numbers, so that no process ever holds the whole model;
    shard() gives each process its rows of them."""
    if not sharded:
        yield
        return
    with torch.device('meta'):
        yield


def shard(model, device, dtype, seed):
    """FSDP: shards the weights of each Block, then the rest, over the processes, and moves the shards to device.
    Before the optimizer is made: it must hold the shards. A model built on the meta device (building()) gets its
    values here, each process its rows only: the initial weights that one process draws after
    torch.manual_seed(seed) (initialise). A whole model keeps its rows: a GPT-2 that every process read, or a
    checkpoint's (checkpoint.model_from_checkpoint: its weights are the file's pages, mapped, so a process reads
    only the rows it keeps).
    Under FSDP the compute dtype comes from its MixedPrecisionPolicy instead of autocast: dtype for the forward
    and backward, float32 for the gradient reduce-scatter and for the sharded weights, gradients and AdamW state
    that the optimizer steps. float16 keeps its GradScaler: the backward still runs in float16, where small
    gradients underflow, and torch.amp.GradScaler takes FSDP's DTensor gradients (DTensor's found_inf handler
    takes the max over the shards, so every process skips the same steps)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    on_meta = next(model.parameters()).is_meta
    # a meta model's modules that hold weights, with their whole shapes (sharding cuts them), in the order built
    leaves = [(name, copy.deepcopy(module)) for name, module in model.named_modules()
              if on_meta and isinstance(module, (nn.Linear, nn.Embedding, LayerNorm))]
    mesh = init_device_mesh(torch.device(device).type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy() if dtype == 'float32' else \
        MixedPrecisionPolicy(param_dtype=PTDTYPE[dtype], reduce_dtype=torch.float32)
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, mp_policy=policy) # each Block's weights are gathered only while it runs
    fully_shard(model, mesh=mesh, mp_policy=policy) # embeddings, final layer norm, lm_head (tied to wte)
    if not on_meta:
        return
    model.to_empty(device=device) # each process's shards, not yet set
    with torch.no_grad():
        initialise(model, leaves, seed)


def my_rows(tensor):
    """This process's rows of a whole tensor, as FSDP2 shards dim 0: cut like torch.chunk into one piece per
    process (pieces of ceil(rows / processes) rows, the last ones shorter or empty)."""
    first, end = shard_rows(len(tensor), dist.get_rank(), dist.get_world_size())
    return tensor[first:end]


def shard_rows(rows, rank, world_size):
    """(first, end): the rows of a tensor of that many rows that process rank holds under FSDP (see my_rows)."""
    piece = -(-rows // world_size)
    return min(rank * piece, rows), min((rank + 1) * piece, rows)


def initialise(model, leaves, seed):
    """Sets the shards of a sharded GPT to this process's rows of the weights that GPT(config) gives it in one
    process after torch.manual_seed(seed). GPT.__init__ draws from the CPU generator: nn.Linear's and nn.Embedding's
    own initialisation as they are built, then _init_weights on each module, then the residual projections'
    smaller normal. This draws the same numbers in the same order, each weight whole on the CPU, one at a time
    (leaves: a meta copy of each module with weights, in the order they are built), and copies this process's rows
    of it into its shard: the tied wte/lm_head weight ends with the last value drawn for it, lm_head's, as there.
    Keep in step with GPT.__init__: tests/test_fsdp.py compares the two. Drawn in a fork of the RNG, so that this
    process's own random numbers (dropout) stay those of its seed."""
    def draw(name, leaf, init):
        whole = copy.deepcopy(leaf).to_empty(device='cpu')
        init(whole)
        for param_name, value in whole.named_parameters():
            model.get_parameter(f'{name}.{param_name}').to_local().copy_(my_rows(value))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, leaf in leaves:
            draw(name, leaf, ones_and_zeros if isinstance(leaf, LayerNorm) else type(leaf).reset_parameters)
        for name, leaf in leaves:
            if not isinstance(leaf, LayerNorm): # which _init_weights leaves as they are
                draw(name, leaf, model._init_weights)
        std = 0.02 / math.sqrt(2 * model.config.n_layer)
        for name, param in model.named_parameters():
            if name.endswith('c_proj.weight'):
                param.to_local().copy_(my_rows(torch.nn.init.normal_(torch.empty(param.shape), mean=0.0, std=std)))


def ones_and_zeros(layer_norm):
    """model.LayerNorm's initial weights, which it gets without drawing."""
    layer_norm.weight.fill_(1.0)
    if layer_norm.bias is not None:
        layer_norm.bias.zero_()


def map_whole(fn, matrices):
    """fn(wholes, positions): the results (of the same shapes) of a function of whole matrices, Muon's
    orthogonalisation, which computes those of one shape together; positions are the matrices' places in matrices.
    Under FSDP each process holds only rows of each matrix (a DTensor), and gets only its rows of each result: the
    matrices are dealt out to the processes in turn, largest first (so that their shares cost alike). In one
    all-to-all every process sends each the rows it holds of that one's matrices, to which it applies fn whole; in a
    second, each sends every process its rows of the results. Two collectives, each matrix sent twice, fn computed
    once per matrix, and every process then holds exactly what one process computes alone. Other tensors (one
    process, DDP) go to fn all together, as they are."""
    dtensor = sys.modules.get('torch.distributed.tensor') # imported by FSDP: without it nothing is sharded
    if not matrices or dtensor is None or not isinstance(matrices[0], dtensor.DTensor):
        return fn(matrices, range(len(matrices)))
    assert all(m.placements == (dtensor.Shard(0),) for m in matrices)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    order = sorted(range(len(matrices)), key=lambda i: -matrices[i].numel())
    dealt = [order[k::world_size] for k in range(world_size)] # the positions of process k's matrices
    local = [m.to_local() for m in matrices]
    flat = lambda tensors: torch.cat([t.reshape(-1) for t in tensors] or [local[0].new_empty(0)])
    rows = lambda i, k: slice(*shard_rows(len(matrices[i]), k, world_size)) # process k's rows of matrix i
    size = lambda i, k: (rows(i, k).stop - rows(i, k).start) * matrices[i].shape[1] # how many numbers they are
    sent = [sum(local[i].numel() for i in dealt[k]) for k in range(world_size)]
    received = [sum(size(i, k) for i in dealt[rank]) for k in range(world_size)]
    pieces = local[0].new_empty(sum(received))
    dist.all_to_all_single(pieces, flat([local[i] for k in range(world_size) for i in dealt[k]]), received, sent)
    from_each = [piece.split([size(i, k) for i in dealt[rank]]) for k, piece in enumerate(pieces.split(received))]
    wholes = [torch.cat([from_each[k][j].view(-1, matrices[i].shape[1]) for k in range(world_size)])
              for j, i in enumerate(dealt[rank])]
    results = [r.to(pieces.dtype) for r in fn(wholes, dealt[rank])]
    mine = local[0].new_empty(sum(sent))
    dist.all_to_all_single(mine, flat([r[rows(i, k)] for k in range(world_size) for r, i in zip(results, dealt[rank])]),
                           sent, received)
    out = [None] * len(matrices)
    for k, piece in enumerate(mine.split(sent)):
        for i, rows_of_i in zip(dealt[k], piece.split([local[i].numel() for i in dealt[k]])):
            m = matrices[i]
            out[i] = dtensor.DTensor.from_local(rows_of_i.view(local[i].shape), m.device_mesh, m.placements,
                                                shape=m.shape, stride=m.stride(), run_check=False)
    return out


def share(count, rank, world_size):
    """This process's part of count pieces of evaluation work (batches, HellaSwag examples), handed out to the
    processes in turn: (piece, counted) pairs, equally many in every process. Under FSDP every forward pass takes
    all processes (each gathers the weights from the others), so a process with fewer pieces runs piece 0 once
    more, not counted. Under DDP that costs no time: the processes wait for the slowest at the sum anyway."""
    for piece in range(rank, -(-count // world_size) * world_size, world_size):
        yield (piece, True) if piece < count else (0, False)


def wrap(model, device):
    """DDP: every process holds all weights; gradients are averaged in the backward pass. An FSDP model needs no
    wrapper: shard() made it an FSDPModule in place."""
    if is_sharded(model):
        return model
    return DDP(model, device_ids=[torch.device(device).index] if torch.device(device).type == 'cuda' else None)


def unwrap(model):
    """The model inside torch.compile's and DDP's wrappers."""
    model = getattr(model, 'module', model) # DDP
    return getattr(model, '_orig_mod', model) # torch.compile


def is_sharded(model):
    # FSDP is imported only by shard(): it takes seconds, which a run on one device need not wait for
    fsdp = sys.modules.get('torch.distributed.fsdp')
    return fsdp is not None and isinstance(unwrap(model), fsdp.FSDPModule)


@contextmanager
def gradient_sync(model, enabled):
    """Around a micro step's forward and backward: whether its gradients are averaged over the processes.
    In gradient accumulation only the last micro step's are, as DDP's no_sync() and FSDP's
    set_requires_gradient_sync(False) leave the others in each process (FSDP: unsharded, as with DDP)."""
    if enabled or not dist.is_initialized():
        yield
    elif isinstance(model, DDP):
        with model.no_sync():
            yield
    else:
        fsdp_model = unwrap(model)
        fsdp_model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            fsdp_model.set_requires_gradient_sync(True)


def full_state(model, optimizers):
    """The model's state dict and a list of the optimizers' state dicts, as one process would have them: no wrapper
    prefixes, whole tensors, each optimizer's parameters numbered in its param_groups order, as nanoGPT saves them.
    Every process calls it. Under FSDP the shards are gathered one tensor at a time to the CPU of rank 0, so that no
    GPU holds the whole model; the other processes get empty dicts."""
    model = unwrap(model)
    if not is_sharded(model):
        return model.state_dict(), [optimizer.state_dict() for optimizer in optimizers]
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    optimizer_states = [get_optimizer_state_dict(model, optimizer, options=options) for optimizer in optimizers]
    if not model_state: # not rank 0
        return {}, [{} for _ in optimizers]
    first_name = {} # a tied weight (lm_head is wte) comes back as two copies: one tensor again, as in state_dict()
    for name, p in model.named_parameters(remove_duplicate=False):
        model_state[name] = model_state[first_name.setdefault(id(p), name)]
    return model_state, [numbered(model, optimizer, state) for optimizer, state in zip(optimizers, optimizer_states)]


def numbered(model, optimizer, state):
    """An optimizer state dict keyed by parameter names (torch.distributed.checkpoint's) keyed by numbers instead,
    as optimizer.state_dict() numbers them."""
    index = {name: i for i, name in enumerate(parameter_names(model, optimizer))}
    return {
        'state': {index[name]: tensors for name, tensors in state['state'].items()},
        'param_groups': [{**{k: v for k, v in group.items() if k != 'params'},
                          'params': [index[name] for name in group['params']]}
                         for group in state['param_groups']],
    }


def load_optimizer_state(model, optimizer, state):
    """Loads an optimizer state dict saved by full_state (or nanoGPT), whatever the number of processes it was
    saved with. Under FSDP each process keeps its shard of each tensor."""
    model = unwrap(model)
    if not is_sharded(model):
        return optimizer.load_state_dict(state)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    names = parameter_names(model, optimizer)
    by_name = {
        'state': {names[i]: tensors for i, tensors in state['state'].items()},
        'param_groups': [{**group, 'params': [names[i] for i in group['params']]} for group in state['param_groups']],
    }
    # every process read the checkpoint already (train.py needs its model_args, iter_num and RNG states),
    # so each shards its own copy: broadcast_from_rank0 would only add traffic
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def parameter_names(model, optimizer):
    """The names of the optimizer's parameters, in its param_groups order: the order of a state dict's numbers."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group['params']]


def check_weights_identical(model):
    """Raises RuntimeError naming the tensors whose values differ between the processes. Under DDP every process
    holds all weights and applies the same averaged gradients, so they must stay equal. What is compared is a
    checksum per tensor: the sum of its elements' bits read as integers of their size, which wraps around, so that
    no copy is made (a sum into a wider type copies the tensor first), and which any one changed element changes.
    Under FSDP there is nothing to compare: each weight lives in one process only."""
    model = unwrap(model)
    if not dist.is_initialized() or is_sharded(model):
        return
    names, tensors = zip(*model.named_parameters())
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    sums = torch.stack([t.detach().view(as_int[t.element_size()]).sum(dtype=as_int[t.element_size()]).long()
                        for t in tensors])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    differ = [name for name, a, b in zip(names, low.tolist(), high.tolist()) if a != b]
    if differ:
        raise RuntimeError(f"the weights differ between the {dist.get_world_size()} processes: {', '.join(differ)}")
