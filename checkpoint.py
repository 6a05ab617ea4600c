"""Training checkpoints on disk: written atomically, read safely, and a model built from one."""

import os
import random

import numpy as np
import torch

from configurator import UserError
from fileio import write_atomically
from model import GPT, GPTConfig

# ckpt.pt is nanoGPT's checkpoint, the model that sample.py reads: the latest one, or with
# always_save_checkpoint=False the best on val. When the latest training state differs from it (between evals,
# or after an eval that did not improve), that state goes to last.pt, which exists only while it is newer.
CKPT = 'ckpt.pt'
LAST = 'last.pt'


def model_path(out_dir):
    """The checkpoint whose model to sample, export or evaluate: ckpt.pt, or last.pt if there is no ckpt.pt yet."""
    ckpt, last = os.path.join(out_dir, CKPT), os.path.join(out_dir, LAST)
    return last if os.path.exists(last) and not os.path.exists(ckpt) else ckpt


def resume_path(out_dir):
    """The checkpoint to resume training from: the newest state, last.pt when there is one, else ckpt.pt."""
    last = os.path.join(out_dir, LAST)
    return last if os.path.exists(last) else os.path.join(out_dir, CKPT)


def save_checkpoint(checkpoint, path):
    """Writes checkpoint to path atomically: a crash at any moment leaves the old checkpoint or the new one, whole."""
    write_atomically(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path):
    """Reads a checkpoint of ours or nanoGPT's to CPU, tensors and plain data only (no code is run).
    Model keys lose the '_orig_mod.' prefix that a torch.compile'd model's state dict has."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}; train one first or point --out_dir at the run's directory")
    try:
        # mmap: the processes of a torchrun share the file's pages instead of each holding a copy
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read checkpoint {path} ({reason}); it is truncated or not a checkpoint")
    if not isinstance(checkpoint, dict) or not {'model', 'model_args'} <= checkpoint.keys():
        raise UserError(f"{path} is not a nanoGPT checkpoint: it has no 'model' and 'model_args'")
    checkpoint['model'] = {k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()}
    return checkpoint


def model_from_checkpoint(checkpoint, path, **model_args):
    """The GPT that checkpoint (read from path) holds; model_args (e.g. dropout) override the saved ones."""
    model_args = {**checkpoint['model_args'], **model_args}
    try:
        model = GPT(GPTConfig(**model_args))
    except (TypeError, ValueError) as e:
        raise UserError(f"{path} has model_args this model cannot take: {e}")
    try:
        model.load_state_dict(checkpoint['model'])
    except RuntimeError as e:
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UserError(f"the weights in {path} do not fit its model_args {model_args}: {detail}")
    return model


def rng_state(device):
    """This process's RNG states, as CPU tensors and plain data (weights_only-loadable). torch's drives dropout;
    numpy's and python's are saved too, for code that may use them."""
    np_state = np.random.get_state()
    return {'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state(device) if torch.device(device).type == 'cuda' else None,
            'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            'python': [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def set_rng_state(state, device):
    """Restores rng_state(device). The states must be CPU tensors, as load_checkpoint gives them:
    torch.set_rng_state and torch.cuda.set_rng_state take only a CPU ByteTensor."""
    torch.set_rng_state(state['torch'])
    if state['cuda'] is not None and torch.device(device).type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], device)
    np.random.set_state((state['numpy'][0], state['numpy'][1].numpy().astype(np.uint32), *state['numpy'][2:]))
    random.setstate((state['python'][0], tuple(state['python'][1]), state['python'][2]))
