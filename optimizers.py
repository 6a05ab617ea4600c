"""The optimizers of a training run, for train.py and the benchmarks: nanoGPT's AdamW for every weight
(optimizer='adamw'), or Muon for the weight matrices of the Blocks with that AdamW for the rest (optimizer='muon'):
built, scheduled, stepped and checkpointed together. docs/muon.md has the measurements behind the choices here."""

import itertools

import torch
from torch import nn

from errors import UserError
from parallel import load_optimizer_state, map_whole

# where a checkpoint keeps each optimizer's state: AdamW's under nanoGPT's key, so that nanoGPT's checkpoints resume
# (and ours load in nanoGPT), Muon's under a key of its own
CHECKPOINT_KEYS = ('optimizer', 'muon')


def check_optimizer(optimizer, checkpoint, path):
    """Raises a UserError when optimizer='muon' meets a torch without torch.optim.Muon, or when the checkpoint to
    resume (None: a new run) was trained with the other optimizer, whose state would not carry over."""
    if optimizer == 'muon' and not hasattr(torch.optim, 'Muon'):
        raise UserError(f"optimizer='muon' needs torch.optim.Muon, which came with torch 2.9 (this is torch "
                        f"{torch.__version__}): pip install 'torch>=2.9', or use --optimizer=adamw")
    trained_with = 'muon' if checkpoint is not None and 'muon' in checkpoint else 'adamw'
    if checkpoint is not None and trained_with != optimizer:
        raise UserError(f"{path} was trained with optimizer={trained_with!r}; its optimizer state does not carry "
                        f"over to optimizer={optimizer!r}: resume with --optimizer={trained_with}")


def block_matrices(model):
    """The weight matrices of the Blocks, Muon's: attention's c_attn and c_proj, the MLP's c_fc and c_proj. Chosen
    by module, not by shape: the embeddings are matrices too, and stay with AdamW."""
    return [module.weight for block in model.transformer.h for module in block.modules()
            if isinstance(module, nn.Linear)]


def configure_optimizers(model, optimizer, weight_decay, learning_rate, betas, device_type, dtype,
                         muon_lr, muon_momentum, muon_weight_decay, muon_lr_adjust):
    """[AdamW] as nanoGPT configures it (model.configure_optimizers: 2D weights decayed, the rest not), or for
    optimizer='muon' [AdamW, Muon]: Muon for block_matrices(model), AdamW, configured alike, for the rest (the tied
    token embedding and lm_head, the position embedding, LayerNorms, biases). c_attn holds Q, K and V: Muon
    orthogonalises them as 3 matrices (as modded-nanogpt does; measured better than the whole, docs/muon.md).
    Muon orthogonalises in bfloat16 where the run computes in it, as torch's Muon does, else in float32: a CPU
    without bfloat16 matmuls runs them ~15x slower (docs/muon.md), and float16 is too narrow for it (nanochat
    orthogonalises in float32 there too)."""
    if optimizer == 'adamw':
        return [model.configure_optimizers(weight_decay, learning_rate, betas, device_type)]
    matrices = block_matrices(model)
    muon_ids = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in muon_ids]
    decay, no_decay = [p for p in rest if p.dim() >= 2], [p for p in rest if p.dim() < 2]
    adamw = torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                               {'params': no_decay, 'weight_decay': 0.0}], lr=learning_rate, betas=betas,
                              fused=device_type in ('cuda', 'cpu')) # as nanoGPT's: fused where torch has it
    qkv = [block.attn.c_attn.weight for block in model.transformer.h]
    rest_of_blocks = [p for p in matrices if all(p is not q for q in qkv)]
    muon = Muon([{'params': qkv, 'parts': 3}, {'params': rest_of_blocks}], lr=muon_lr, momentum=muon_momentum,
                weight_decay=muon_weight_decay,
                adjust_lr_fn=muon_lr_adjust, orthogonalise_in=torch.bfloat16 if dtype == 'bfloat16' else torch.float32)
    count = lambda params: f"{len(params)} tensors, {sum(p.numel() for p in params):,} parameters"
    print(f"Muon for the Blocks' weight matrices ({count(matrices)}, orthogonalised in "
          f"{str(muon.orthogonalise_in).removeprefix('torch.')}); AdamW for the rest: decayed {count(decay)}, "
          f"non-decayed {count(no_decay)}")
    return [adamw, muon]


def load_state(model, optimizers, checkpoint):
    """Loads each optimizer's state from checkpoint (CHECKPOINT_KEYS), whatever the number of processes it was saved
    with (parallel.load_optimizer_state). Muon's momentum, weight decay and lr adjustment stay this run's settings:
    a state dict would bring back the saved ones."""
    for key, optimizer in zip(CHECKPOINT_KEYS, optimizers):
        settings = [{k: v for k, v in group.items() if k != 'params'} for group in optimizer.param_groups]
        load_optimizer_state(model, optimizer, checkpoint[key])
        if isinstance(optimizer, Muon):
            for group, setting in zip(optimizer.param_groups, settings):
                group.update(setting)


def set_lr(optimizers, lr, learning_rate):
    """This iteration's learning rate: lr, the schedule's value (train.py's get_lr), for AdamW, and for Muon its own
    peak (muon_lr) scaled alike, by lr / learning_rate (0 when learning_rate is 0)."""
    for optimizer in optimizers:
        value = optimizer.defaults['lr'] * (lr / learning_rate if learning_rate else 0.0) \
            if isinstance(optimizer, Muon) else lr
        for group in optimizer.param_groups:
            group['lr'] = value


def optimizer_step(optimizers, scaler, parameters, grad_clip):
    """The update of one iteration, from the gradients of its micro steps: float16's GradScaler unscales them (before
    the clipping and before Muon orthogonalises), they are clipped to a norm of grad_clip (0: not), each optimizer
    steps, and the gradients are freed. Where the scaler finds an inf or NaN gradient, the step is skipped, and with
    two optimizers by both: a scaler would skip only the one whose gradients overflowed, and the clipping would
    have zeroed the other's."""
    together = scaler.is_enabled() and len(optimizers) > 1
    if grad_clip != 0.0 or together:
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
    parameters = list(parameters)
    if grad_clip != 0.0:
        norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    elif together:
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if together and hasattr(norm, 'full_tensor'): # FSDP's gradients are DTensors, and so is their norm
        norm = norm.full_tensor()
    if not together or torch.isfinite(norm):
        for optimizer in optimizers:
            scaler.step(optimizer)
    scaler.update()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)


# -----------------------------------------------------------------------------
# Muon: torch's, orthogonalising each matrix whole under FSDP, in the dtype the run computes in

def newton_schulz(batch, coefficients, steps, eps, dtype):
    """torch.optim.Muon's orthogonalisation (its _zeropower_via_newtonschulz: the same operations in the same order,
    which on a CPU give its numbers bit for bit) of a batch of matrices of one shape at once, computed in dtype
    where torch's always takes bfloat16: about U V^T of each one's SVD U S V^T."""
    a, b, c = coefficients
    x = batch.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps) # a spectral norm of at most 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def orthogonalise(matrices, parts, coefficients, steps, eps, dtype):
    """newton_schulz of each matrix, cut by rows into its number of parts, each part a matrix of its own; those
    of one shape in one batch: on the quick start, one for each of its three shapes rather than one for each of its
    24 matrices, which saves a third of the time (docs/muon.md)."""
    pieces = [piece for matrix, n in zip(matrices, parts) for piece in matrix.chunk(n)]
    batches = {}
    for k, piece in enumerate(pieces):
        batches.setdefault(piece.shape, []).append(k)
    results = [None] * len(pieces)
    for batch in batches.values():
        for k, result in zip(batch, newton_schulz(torch.stack([pieces[k] for k in batch]), coefficients, steps, eps,
                                                  dtype)):
            results[k] = result
    results = iter(results)
    return [torch.cat(list(itertools.islice(results, n))) for n in parts]


def adjusted_lr(lr, adjust_lr_fn, shape):
    """torch.optim.Muon's learning rate for a matrix of shape (rows, columns), so that updates of matrices of any
    shape have the same RMS: 'original' (Keller Jordan's) scales lr by sqrt(max(1, rows / columns)),
    'match_rms_adamw' (Moonshot's) by 0.2 sqrt(max(rows, columns)), the RMS of an AdamW update."""
    rows, columns = shape
    if adjust_lr_fn == 'match_rms_adamw':
        return lr * 0.2 * max(rows, columns) ** 0.5
    return lr * max(1, rows / columns) ** 0.5


# torch before 2.9 has no Muon: check_optimizer refuses optimizer='muon' there, so this class is never made from
# the stand-in base, which only lets this module import for AdamW's runs
class Muon(getattr(torch.optim, 'Muon', torch.optim.Optimizer)):
    """torch.optim.Muon (its settings, state and update: Nesterov momentum, Newton-Schulz, decoupled weight decay,
    the lr adjusted to the shape), stepped so that it runs everywhere a run goes:
    - under FSDP each process holds only rows of a matrix, and orthogonalising those rows is not orthogonalising
      the matrix: each matrix is orthogonalised whole, by one process, which gets the rows from the others and
      sends them their rows of the result back (parallel.map_whole). torch's own step takes FSDP's DTensors and
      lets every matmul of Newton-Schulz communicate: a dozen collectives per matrix, in every process, and the
      result differs from one process's by bfloat16's rounding, amplified in the directions the gradient does not
      span (docs/muon.md);
    - Newton-Schulz computes in orthogonalise_in: torch's takes bfloat16, which a CPU without bfloat16 matmuls
      runs ~15x slower than float32.
    A param group's 'parts' (1 where absent) cuts each of its matrices by rows into that many, each orthogonalised
    and lr-adjusted as a matrix of its own shape: c_attn's Q, K and V. With orthogonalise_in=torch.bfloat16, on one
    process and without parts, a step is torch's step bit for bit (tested)."""

    def __init__(self, params, orthogonalise_in=torch.bfloat16, **settings):
        super().__init__(params, **settings)
        self.orthogonalise_in = orthogonalise_in

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "train.py computes the loss itself"
        params, groups, updates = [], [], []
        for group in self.param_groups:
            grads, momentum_buffers = [], []
            self._init_group(group, params, grads, momentum_buffers)
            groups += [group] * len(grads)
            momentum = group['momentum']
            for grad, buffer in zip(grads, momentum_buffers):
                buffer.lerp_(grad, 1 - momentum)
                updates.append(grad.lerp(buffer, momentum) if group['nesterov'] else buffer)
        parts = [group.get('parts', 1) for group in groups]
        # all the groups' matrices together, with Newton-Schulz's settings as configure_optimizers gives them
        settings = [self.defaults[k] for k in ('ns_coefficients', 'ns_steps', 'eps')]
        whole = lambda matrices, positions: orthogonalise(matrices, [parts[i] for i in positions], *settings,
                                                          self.orthogonalise_in)
        for param, group, n, update in zip(params, groups, parts, map_whole(whole, updates)):
            rows, columns = param.shape
            param.mul_(1 - group['lr'] * group['weight_decay'])
            param.add_(update, alpha=-adjusted_lr(group['lr'], group['adjust_lr_fn'], (rows // n, columns)))
