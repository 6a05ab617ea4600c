"""Training on several processes (torchrun): the process group and its timeout, DDP or FSDP around the model,
gradient sync in gradient accumulation, the whole single-process state of a sharded model, and the check that
replicated weights stayed equal. Single-process runs pass through every function here unchanged."""

import datetime
import os
import sys
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from hardware import PTDTYPE


def init_process_group(backend, device, timeout, out_dir):
    """Joins the torchrun processes. A collective that waits more than timeout seconds on another process (dead or
    stuck) fails, and a failed collective ends this process with one line saying what to do, and exit code 1."""
    if torch.device(device).type == 'cuda':
        torch.cuda.set_device(device)
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
    previous_hook = sys.excepthook # configurator's, which prints UserErrors

    def on_error(kind, error, traceback):
        # gloo raises a plain RuntimeError that names its own source file; NCCL (with TORCH_NCCL_BLOCKING_WAIT=1)
        # and the store raise DistError
        if not (issubclass(kind, dist.DistError) or (issubclass(kind, RuntimeError) and '/gloo/' in str(error))):
            return previous_hook(kind, error, traceback)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else kind.__name__
        print(f"error: process {dist.get_rank()} of {dist.get_world_size()}: another process died or did not answer "
              f"within dist_timeout={timeout.total_seconds():g} s ({reason}); the last checkpoint in {out_dir} is "
              f"kept: go on with --init_from=resume, or start torchrun with --max-restarts=N to restart by itself",
              file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1) # not sys.exit: tearing down a process group whose peer is gone can hang
    sys.excepthook = on_error


def gather(value):
    """[value of process 0, value of process 1, ...]: every process's value, in every process; [value] alone."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def shard(model, device, dtype):
    """FSDP: shards the weights of each Block, then the rest, over the processes, and moves the shards to device.
    Before the optimizer is made: it must hold the shards. Under FSDP the compute dtype comes from its
    MixedPrecisionPolicy instead of autocast: dtype for the forward and backward, float32 for the gradient
    reduce-scatter and for the sharded weights, gradients and AdamW state that the optimizer steps.
    float16 keeps its GradScaler: the backward still runs in float16, where small gradients underflow, and
    torch.amp.GradScaler takes FSDP's DTensor gradients (DTensor's found_inf handler takes the max over the
    shards, so every process skips the same steps)."""
    device_type = torch.device(device).type
    # unlike DDP, fully_shard does not make the processes' initial weights equal: rank 0's go to all,
    # one tensor at a time through the device (NCCL sends device memory only)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            on_device = tensor.to(device)
            dist.broadcast(on_device, src=0)
            tensor.copy_(on_device)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy() if dtype == 'float32' else \
        MixedPrecisionPolicy(param_dtype=PTDTYPE[dtype], reduce_dtype=torch.float32)
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, mp_policy=policy) # each Block's weights are gathered only while it runs
    fully_shard(model, mesh=mesh, mp_policy=policy) # embeddings, final layer norm, lm_head (tied to wte)


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


def full_state(model, optimizer):
    """The model's and the optimizer's state dicts as one process would have them: no wrapper prefixes, whole
    tensors, the optimizer's parameters numbered in param_groups order, as nanoGPT saves them. Every process
    calls it. Under FSDP the shards are gathered one tensor at a time to the CPU of rank 0, so that no GPU holds
    the whole model; the other processes get empty dicts."""
    model = unwrap(model)
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state, optimizer_state = get_state_dict(model, optimizer, options=options)
    if not model_state: # not rank 0
        return {}, {}
    first_name = {} # a tied weight (lm_head is wte) comes back as two copies: one tensor again, as in state_dict()
    for name, p in model.named_parameters(remove_duplicate=False):
        model_state[name] = model_state[first_name.setdefault(id(p), name)]
    index = {name: i for i, name in enumerate(parameter_names(model, optimizer))}
    return model_state, {
        'state': {index[name]: state for name, state in optimizer_state['state'].items()},
        'param_groups': [{**{k: v for k, v in group.items() if k != 'params'},
                          'params': [index[name] for name in group['params']]}
                         for group in optimizer_state['param_groups']],
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
