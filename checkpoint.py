"""Training checkpoints on disk, written atomically and read safely, and the one place that turns init_from
(scratch, resume, a GPT-2, a transformers directory) into a model, for train, sample, eval_hellaswag and export."""

import os
import random
import time

import numpy as np
import torch

from errors import UserError, first_line, writing
from configurator import inherit
from fileio import (check_directory_path, check_unclaimed, claim, commit, open_snapshot, read_directory,
                    remove_stale_temps, write_atomically)
from model import GPT, GPT2_MODELS, GPTConfig
from tokenizer import model_tokenizer

# ckpt.pt is nanoGPT's checkpoint, the model that sample.py reads: the latest one, or with
# always_save_checkpoint=False the best on val. When the latest training state differs from it (between evals,
# or after an eval that did not improve), that state goes to last.pt, which exists only while it is newer.
CKPT = 'ckpt.pt'
LAST = 'last.pt'
BUSY = "wait for it to end or stop it, or pick another --out_dir"  # for an out_dir that another run holds


def open_checkpoint(out_dir, newest):
    """(path, open file or None) of a checkpoint in out_dir as its last committed change left it (fileio.open_snapshot,
    so a killed save never shows): with newest, the training state to resume, last.pt when there is one, else
    ckpt.pt; else the model to sample, export or evaluate, ckpt.pt, or last.pt before there is a ckpt.pt."""
    files = open_snapshot(out_dir, [CKPT, LAST])
    name = (LAST if files[LAST] else CKPT) if newest else (CKPT if files[CKPT] or not files[LAST] else LAST)
    for other, f in files.items():
        if other != name and f is not None:
            f.close()
    return os.path.join(out_dir, name), files[name]


def model_path(out_dir):
    """The checkpoint whose model to sample, export or evaluate (see open_checkpoint)."""
    path, f = open_checkpoint(out_dir, newest=False)
    if f is not None:
        f.close()
    return path


def save_checkpoint(checkpoint, out_dir, name, advice=""):
    """Writes checkpoint to out_dir/name atomically: a crash at any moment leaves the old checkpoint or the new one,
    whole. A new ckpt.pt removes last.pt (older now) in the same change, so that no crash leaves a last.pt for resume
    to go back to. A full disk ends in one line, followed by advice (which checkpoint is kept)."""
    write_atomically(os.path.join(out_dir, name), lambda f: torch.save(checkpoint, f), advice,
                     removals=[LAST] if name == CKPT else [])


def checkpoint_to_resume(out_dir, init_from, restart_count, run_id):
    """(checkpoint, path): the training state to go on from, or None to start anew. init_from='resume' reads the
    newest state in out_dir (open_checkpoint); a process that torchrun restarted after another died reads it too,
    if it is this run's own (its provenance names run_id): else the run died before its first checkpoint, and
    starts again."""
    path, f = open_checkpoint(out_dir, newest=True)
    if init_from != 'resume' and not (restart_count > 0 and f is not None):
        if f is not None:
            f.close()
        return None, path
    checkpoint = load_checkpoint(path, f or no_checkpoint(path)) # to CPU: the model and the optimizer move their
                                                                 # state to the device
    if init_from != 'resume' and checkpoint.get('provenance', {}).get('run_id') != run_id:
        return None, path
    check_resumable(checkpoint, path)
    return checkpoint, path


SHAPE = ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias')  # a resumed model's: the checkpoint's, as in nanoGPT
MACHINE = ('device', 'dtype', 'compile', 'backend', 'dist_timeout')  # this machine's, not the checkpoint's


def resume_settings(checkpoint, path, namespace, config):
    """A resumed run goes on with its own settings, which its checkpoint records (ours and nanoGPT's), under what a
    config file or the command line gives (config.given); the machine's settings are this machine's, and the model's
    shape is the checkpoint's. Updates namespace and config; returns the notes that say what came from where."""
    saved = {k: v for k, v in (checkpoint.get('config') or {}).items() if k not in ('out_dir', 'init_from')}
    notes = []
    inherited = inherit(namespace, config, saved, f"the config of {path}", keep=MACHINE)
    if inherited:
        notes.append("resuming with the run's own settings: " + ", ".join(f"{k}={v!r}" for k, v in inherited.items()))
    changed = {k: (saved[k], config[k]) for k in config.given if k in saved and saved[k] != config[k]}
    if changed:
        notes.append("changed since the checkpoint: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    shape = {k: checkpoint['model_args'][k] for k in SHAPE}
    ignored = ", ".join(f"{k}={v} (not {config[k]})" for k, v in shape.items() if config[k] != v)
    if ignored:
        notes.append(f"a resumed run keeps its model's shape: {ignored}")
    namespace.update(shape)
    config.update(shape) # the checkpoints and the log record what runs
    return notes


def run_so_far(checkpoint, tokens_per_iter):
    """(iter_num, best_val_loss, best_iter, tokens trained on, tokens an iteration) of the run checkpoint holds.
    nanoGPT's record no tokens: worked out from its config's batch (else from tokens_per_iter, this run's)."""
    saved = checkpoint.get('config') or {}
    then = saved.get('gradient_accumulation_steps', 0) * saved.get('batch_size', 0) * \
        checkpoint['model_args']['block_size'] or tokens_per_iter
    iter_num = checkpoint['iter_num']
    return (iter_num, float(checkpoint['best_val_loss']), checkpoint.get('best_iter'), # nanoGPT saved a tensor
            checkpoint.get('tokens', iter_num * then), then)


def check_out_dir(out_dir):
    """At the start, before anything is loaded or written: out_dir is a directory or nothing yet, and no other run
    holds it (take_out_dir makes it this run's later, once the config is known to be fine)."""
    check_directory_path(out_dir, 'out_dir')
    if os.path.isdir(out_dir):
        check_unclaimed(out_dir, BUSY)


def take_out_dir(out_dir, new_run):
    """Makes out_dir this process's (fileio.claim) and clears what killed runs left there; a new_run (not resumed)
    first moves an earlier run's checkpoints aside. Only once the config is known to be fine: this writes."""
    with writing(out_dir, "pick another --out_dir"):
        os.makedirs(out_dir, exist_ok=True)
    claim(out_dir, BUSY)
    for path in remove_stale_temps(os.path.join(out_dir, CKPT)) + remove_stale_temps(os.path.join(out_dir, LAST)):
        print(f"removed {path}, a checkpoint whose writer was killed")
    earlier = set_aside(out_dir) if new_run else None
    if earlier:
        print(f"moved the earlier run's checkpoints (and its pictures and export) to {earlier} rather than overwrite "
              f"them; delete them when you no longer need them")


EXPORT_MARKER = 'nanogpt_export.json'  # export.py's, in every export: the files it wrote
# what plot.py and export.py made of a run beside its checkpoints: they describe the earlier run's model
DESCRIPTIONS = ('loss.png', 'bpb.png', 'hf')


def set_aside(out_dir):
    """Moves the checkpoints of an earlier run in out_dir into out_dir/earlier/<their time>/, together (a commit) with
    its pictures and export (DESCRIPTIONS), so that a new run never overwrites them and nothing beside the new
    checkpoints describes the earlier model; returns that folder, or None when there were no checkpoints."""
    names = [name for name in (CKPT, LAST) if os.path.exists(os.path.join(out_dir, name))]
    if not names:
        return None
    stamp = time.strftime('%Y%m%d-%H%M%S', time.localtime(max(os.path.getmtime(os.path.join(out_dir, name))
                                                               for name in names)))
    names += [name for name in DESCRIPTIONS if os.path.isfile(os.path.join(out_dir, name))
              or os.path.isfile(os.path.join(out_dir, name, EXPORT_MARKER))]
    folder = os.path.join('earlier', stamp)
    while os.path.exists(os.path.join(out_dir, folder)):
        folder += '+'
    commit(out_dir, {name: os.path.join(folder, name) for name in names})
    return os.path.join(out_dir, folder)


def no_checkpoint(path):
    raise UserError(f"no checkpoint at {path}; train one first or point --out_dir at the run's directory")


def load_checkpoint(path, f=None):
    """Reads a checkpoint of ours or nanoGPT's to CPU, tensors and plain data only (no code is run): the file at
    path, or f, path's file opened already (see open_checkpoint). Model keys lose the '_orig_mod.' prefix that a
    torch.compile'd model's state dict has."""
    if f is None and not os.path.isfile(path):
        no_checkpoint(path)
    # the open file by a name of its own, which stays its whatever replaces path meanwhile
    source = path if f is None else f"/dev/fd/{f.fileno()}"
    try:
        try:
            # mmap: the processes of a torchrun share the file's pages instead of each holding a copy
            checkpoint = torch.load(source, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError as e:
            if 'mmap can only be used with files saved with' not in str(e):
                raise
            checkpoint = torch.load(source, map_location='cpu', weights_only=True) # torch's format before 1.6
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path} ({first_line(e)}); it is truncated or not a checkpoint"
                        f"{beside_hint(path)}")
    finally:
        if f is not None:
            f.close() # the mapping keeps what it needs
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('model'), dict) \
            or not isinstance(checkpoint.get('model_args'), dict):
        raise UserError(f"{path} is not a nanoGPT checkpoint: it has no 'model' and 'model_args'{beside_hint(path)}")
    checkpoint['model'] = {k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()}
    return checkpoint


def beside_hint(path):
    """For a last.pt that cannot be read beside a ckpt.pt: how to resume from the ckpt.pt instead."""
    directory, name = os.path.split(path)
    if name != LAST or not os.path.exists(os.path.join(directory, CKPT)):
        return ""
    return f"; to resume from {os.path.join(directory, CKPT)} instead, move {path} away"


TRAINING_STATE = ('optimizer', 'iter_num', 'best_val_loss')  # what resuming needs beyond the model


def check_resumable(checkpoint, path):
    """Raises a UserError unless checkpoint holds what training needs to go on."""
    missing = [k for k in TRAINING_STATE if k not in checkpoint]
    if missing:
        raise UserError(f"{path} holds a model but not the training state to resume ({', '.join(missing)} missing); "
                        f"start from it with --init_from=scratch and its weights, or train a new one")


def model_from_checkpoint(checkpoint, path, **model_args):
    """The GPT that checkpoint (read from path) holds; model_args (e.g. dropout) override the saved ones. Its
    weights are the checkpoint's own tensors (load_checkpoint's, mapped from the file), in float32: the model is
    built on the meta device, so nothing is drawn at random only to be overwritten (seconds for GPT-2)."""
    model_args = {**checkpoint['model_args'], **model_args}
    try:
        with torch.device('meta'):
            model = GPT(GPTConfig(**model_args))
    except Exception as e:  # a crafted model_args: unknown keys, wrong types, sizes that overflow
        raise UserError(f"{path} has model_args this model cannot take: {e}")
    try:
        model.load_state_dict(checkpoint['model'], assign=True)
    except (RuntimeError, TypeError) as e:
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UserError(f"the weights in {path} do not fit its model_args {model_args}: {detail}")
    model.transformer.wte.weight = model.lm_head.weight # assign gave the tied weight two Parameters: one again
    return model.float()


def init_model(init_from, checkpoint=None, path=None, model_args=None, dropout=0.0):
    """The GPT that init_from names: 'scratch', a new one of model_args; 'resume', the one in checkpoint (read from
    path); 'gpt2' ... 'gpt2-xl', OpenAI's weights from the Hugging Face Hub; or a directory that transformers'
    save_pretrained (or export.py) wrote. dropout replaces the one it was trained with."""
    if init_from == 'resume':
        return model_from_checkpoint(checkpoint, path, dropout=dropout)
    if init_from == 'scratch':
        return GPT(GPTConfig(**{**model_args, 'dropout': dropout}))
    if init_from not in GPT2_MODELS and not os.path.isdir(init_from):
        raise UserError(f"init_from={init_from!r} is not 'scratch', 'resume', a GPT-2 model "
                        f"({', '.join(GPT2_MODELS)}) or a directory saved by transformers")
    try:
        return GPT.from_pretrained(init_from, dict(dropout=dropout))
    except (ValueError, OSError) as e:
        raise UserError(f"cannot load init_from={init_from!r}: {first_line(e)}")


def load_model(init_from, out_dir):
    """For sampling and evaluation: (model, tokenizer, checkpoint) of init_from, 'resume' reading the checkpoint
    that open_checkpoint(out_dir) gives and checkpoint None otherwise; the model in eval mode, on the CPU."""
    if init_from == 'resume': # the tokenizer first: offline, GPT-2's BPE files can be missing
        path, f = open_checkpoint(out_dir, newest=False)
        checkpoint = load_checkpoint(path, f or no_checkpoint(path))
        vocab_size = checkpoint['model_args'].get('vocab_size')
        tokenizer = model_tokenizer(vocab_size, checkpoint=checkpoint) if type(vocab_size) is int else None
        model = init_model(init_from, checkpoint, path).eval()
        return model, tokenizer or model_tokenizer(model.config.vocab_size, checkpoint=checkpoint), checkpoint
    directory = init_from if os.path.isdir(init_from) else None

    def read():
        model = init_model(init_from).eval()
        return model, model_tokenizer(model.config.vocab_size, directory=directory), None
    # an export (a directory) is replaced whole, in one rename: its model and tokenizer are read from one of them
    return read_directory(directory, read) if directory else read()


def model_args_of(model):
    """The model_args of a checkpoint of model, nanoGPT's keys: GPTConfig(**model_args) builds its shape again."""
    args = {k: getattr(model.config, k) for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size',
                                                   'dropout')}
    if model.config.gelu_approximate != 'none': # only then, so that nanoGPT can read our checkpoints
        args['gelu_approximate'] = model.config.gelu_approximate
    return args


def rng_state(device):
    """This process's RNG states, as CPU tensors and plain data (weights_only-loadable). torch's drives dropout;
    numpy's and python's are saved too, for code that may use them."""
    np_state = np.random.get_state()
    return {'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state(device) if torch.device(device).type == 'cuda' else None,
            'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            'python': [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def set_rng_state(states, rank, world_size, device):
    """Restores rng_state(device) of this process from states, the list of every process's that a checkpoint
    holds. The states must be CPU tensors, as load_checkpoint gives them: torch.set_rng_state and
    torch.cuda.set_rng_state take only a CPU ByteTensor."""
    if states is None or len(states) != world_size:
        print("the checkpoint has no RNG state for this number of processes: dropout will not repeat the "
              "uninterrupted run's")
        return
    state = states[rank]
    torch.set_rng_state(state['torch'])
    if state['cuda'] is not None and torch.device(device).type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], device)
    np.random.set_state((state['numpy'][0], state['numpy'][1].numpy().astype(np.uint32), *state['numpy'][2:]))
    random.setstate((state['python'][0], tuple(state['python'][1]), state['python'][2]))
