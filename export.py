"""
Export a trained model as a transformers GPT2LMHeadModel directory, the form in which models are shared:
model.safetensors, config.json, a tokenizer that AutoTokenizer loads, and a model card (README.md).
$ python export.py --out_dir=out-shakespeare-char              # writes out-shakespeare-char/hf
$ python export.py --out_dir=out --hf_dir=my-gpt --push_to_hub=your-name/my-gpt
It exports the model that sample.py samples (out_dir/ckpt.pt), with the tokenizer that sample.py uses: the
vocabulary the checkpoint records (characters, GPT-2's BPE or a BPE trained by data/prepare_text.py), else the
meta.pkl of its dataset, found under data/ in the current directory as nanoGPT looks for it, else GPT-2's BPE.
The directory is written beside hf_dir and takes its place, in one rename, only once transformers, reading it back,
computes the same logits as our model (and, for a BPE, encodes a test text to the same ids).
stdout holds the line that says what was exported (and where it was pushed); notes go to stderr.
"""

import errors
errors.install() # first: a Ctrl-C during the slow imports below ends in one line too

import json
import os
import shutil
import sys

import torch

from checkpoint import EXPORT_MARKER, load_model, model_path
from configurator import configure, optional
from errors import UserError, first_line, writing
from fileio import check_directory_path, exchange, remove_stale_temps, stale_temps, sync_directory, temp_path
from model import CONV1D_WEIGHTS
from tokenizer import GPT2_VOCAB, SELF_TEST

# -----------------------------------------------------------------------------
out_dir: str = 'out' # the training run whose model to export
hf_dir: optional(str) = None # the directory to write; None: <out_dir>/hf
push_to_hub: optional(str) = None # e.g. 'your-name/my-gpt': also upload the export to this Hub repository (needs network, a login)
configure(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------
out = errors.result_stream() # what was exported; everything else goes to stderr

hf_dir = os.path.normpath(hf_dir if hf_dir is not None else os.path.join(out_dir, 'hf'))
MARKER = EXPORT_MARKER # export.py's own: the files it wrote, so that it replaces nothing else


def files_not_exported(directory):
    """The entries of directory that no earlier export wrote: all of them when it holds no marker of ours."""
    try:
        with open(os.path.join(directory, MARKER)) as f:
            ours = set(json.load(f)['files'])
    except (OSError, ValueError, KeyError, TypeError):
        ours = set()
    return sorted(set(os.listdir(directory)) - ours - {MARKER} if ours else os.listdir(directory))


if not os.path.exists(hf_dir):
    check_directory_path(hf_dir, 'hf_dir')
elif not os.path.isdir(hf_dir) or files_not_exported(hf_dir):
    theirs = files_not_exported(hf_dir) if os.path.isdir(hf_dir) else []
    raise UserError(f"{hf_dir} exists and is not an earlier export of export.py" +
                    (f" (it holds {', '.join(theirs[:3])}{', ...' if len(theirs) > 3 else ''}, which export.py did "
                     f"not write)" if theirs else "") + "; pass another --hf_dir, or move it away")
if push_to_hub is not None:
    from huggingface_hub import get_token
    if get_token() is None:
        raise UserError(f"push_to_hub={push_to_hub!r} needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")

ckpt_path = model_path(out_dir)
model, tokenizer, checkpoint = load_model('resume', out_dir)
config = checkpoint.get('config') or {}


def transformers_model(model, tokenizer):
    """A GPT2LMHeadModel that computes what model does. Its Conv1D weights are the transposes of our Linears', a
    model trained with bias=False gets zero biases, and transformers never generates the ids past the tokenizer's
    (the 50304 - 50257 that pad GPT-2's vocabulary, which sample.py never samples either)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    c = model.config
    eot = tokenizer.bpe.eot_token if tokenizer.bpe is not None else None # characters have no end-of-text token
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        activation_function='gelu_new' if c.gelu_approximate == 'tanh' else 'gelu', layer_norm_epsilon=1e-5,
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, bos_token_id=eot, eos_token_id=eot,
        tie_word_embeddings=True))
    ours = model.state_dict()
    weights = {}
    for name, tensor in hf.state_dict().items():
        if name in ours:
            weights[name] = ours[name].t() if name.endswith(CONV1D_WEIGHTS) else ours[name]
        else:
            assert name.endswith('bias') and not c.bias, f"no weights of ours for transformers' {name}"
            weights[name] = torch.zeros_like(tensor)
    hf.load_state_dict(weights)
    hf.generation_config.suppress_tokens = list(range(tokenizer.vocab_size, c.vocab_size)) or None
    return hf


def checkpoint_val_bpb():
    """The val loss in bits per byte of text that the run's log.jsonl records at the checkpoint's iteration (the
    latest run's), or None."""
    bpb, iter_num = None, checkpoint.get('iter_num')
    try:
        with open(os.path.join(out_dir, 'log.jsonl')) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line half written
                if isinstance(record, dict) and 'val_bpb' in record and record.get('iter') == iter_num:
                    bpb = record['val_bpb']
    except OSError:
        return None
    return bpb


def model_card(repo):
    """README.md: what the model is, how to use it, how it was trained, and what ran it."""
    c = model.config
    best_val_loss = float(checkpoint.get('best_val_loss', 1e9))
    val_bpb = checkpoint_val_bpb()
    bpb = f"{val_bpb:.4f} (comparable across vocabularies)" if val_bpb is not None else "not in the run's log.jsonl"
    provenance = {k: v for k, v in (checkpoint.get('provenance') or {}).items() if k != 'config'}
    bpe = ("GPT-2's BPE" if tokenizer.vocab == GPT2_VOCAB else
           "a byte-level BPE trained on its dataset's text (`--tokenizer bpe`, GPT-2's split)")
    vocab = (f"{tokenizer.vocab_size} characters, one token each" if tokenizer.bpe is None else
             f"{bpe}, {tokenizer.vocab_size} tokens" + (f", padded to {c.vocab_size} (transformers never "
             "generates the padding ids: `suppress_tokens` in generation_config.json)"
             if c.vocab_size > tokenizer.vocab_size else ""))
    prompt = "ROMEO:" if tokenizer.bpe is None else "Hello, I am"
    new_tokens = min(100, c.block_size - len(tokenizer.encode(prompt))) # transformers generates no further
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags:
- nanogpt
- gpt2
---

# {repo.split('/')[-1] if push_to_hub else os.path.basename(os.path.abspath(out_dir))}

A GPT trained with a nanoGPT-style `train.py` and exported by its `export.py` to transformers' `GPT2LMHeadModel`.

| | |
| - | - |
| parameters | {model.get_num_params() / 1e6:.2f}M |
| layers, heads, embedding width | {c.n_layer}, {c.n_head}, {c.n_embd} |
| context (block_size) | {c.block_size} |
| vocabulary | {vocab} |
| GELU | {'tanh approximation (`gelu_new`)' if c.gelu_approximate == 'tanh' else 'exact (`gelu`)'} |
| biases | {'yes' if c.bias else 'none in training (bias=False); exported as zeros, which give the same logits'} |
| dataset | {config.get('dataset', 'not recorded')} |
| iterations | {checkpoint.get('iter_num', 'not recorded')} |
| best val loss | {f'{best_val_loss:.4f}' if best_val_loss < 1e9 else 'not measured'} |
| val loss in bits per byte of text | {bpb} |

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForCausalLM.from_pretrained("{repo}")
ids = tokenizer({prompt!r}, return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens={new_tokens}, do_sample=True, top_k=200)[0]))
```

or, with the code that trained it: `python sample.py --init_from={repo}` (a local directory).

## Training configuration

```json
{json.dumps(config, indent=2, default=str)}
```

## Provenance

```json
{json.dumps(provenance, indent=2, default=str) if provenance else '"not recorded in the checkpoint"'}
```
"""


# build everything beside hf_dir, so that a failure at any point leaves hf_dir as it was
tmp_dir, old_dir = temp_path(hf_dir), temp_path(f"{hf_dir}.old")
with writing(hf_dir, "nothing was exported"):
    os.makedirs(os.path.dirname(os.path.abspath(hf_dir)), exist_ok=True)
    earlier = stale_temps(f"{hf_dir}.old")
    if earlier and not os.path.exists(hf_dir): # an export killed between its two renames: put the earlier one back
        os.rename(earlier[-1], hf_dir)
    remove_stale_temps(hf_dir) # what exports killed before they finished left behind
    remove_stale_temps(f"{hf_dir}.old")
    os.makedirs(tmp_dir)
try:
    with writing(hf_dir, f"{hf_dir} is as it was"):
        from transformers import AutoTokenizer, GPT2LMHeadModel
        from transformers.utils.logging import disable_progress_bar
        disable_progress_bar() # the bars of loading and saving a few files would bury what export.py says
        transformers_model(model, tokenizer).save_pretrained(tmp_dir) # model.safetensors, config.json
        tokenizer.save_pretrained(tmp_dir, model_max_length=model.config.block_size)
        with open(os.path.join(tmp_dir, 'README.md'), 'w', encoding='utf-8') as f:
            f.write(model_card(push_to_hub or hf_dir))
        with open(os.path.join(tmp_dir, MARKER), 'w') as f:
            json.dump({'files': sorted(os.listdir(tmp_dir)), 'checkpoint': os.path.abspath(ckpt_path)}, f, indent=1)

        # what was written, read back by transformers, must compute our logits: at every position of a full block
        idx = torch.randint(tokenizer.vocab_size, (1, model.config.block_size),
                            generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ours = model(idx, targets=idx)[0]
            theirs = GPT2LMHeadModel.from_pretrained(tmp_dir).eval()(idx).logits
        difference = (ours - theirs).abs().max().item()
        if difference > 1e-4 * max(1.0, ours.abs().max().item()):
            raise RuntimeError(f"transformers computes other logits from the export than we do (by up to {difference})")
        if tokenizer.bpe is not None and AutoTokenizer.from_pretrained(tmp_dir).encode(SELF_TEST, verbose=False) != \
                tokenizer.encode(SELF_TEST):
            raise RuntimeError("transformers' tokenizer from the export gives other ids than ours on a test text")

        umask = os.umask(0)
        os.umask(umask)
        for name in os.listdir(tmp_dir):
            os.chmod(os.path.join(tmp_dir, name), 0o666 & ~umask) # safetensors writes 0600, as a temporary file
            with open(os.path.join(tmp_dir, name), 'rb') as f:
                os.fsync(f.fileno()) # on disk before the rename, so that a power cut cannot leave a torn file
        # an earlier export (checked above) swaps places with the new one in one rename, so that hf_dir always
        # holds one whole export; removed once it is out (or, if this is killed first, by the next export)
        if not os.path.exists(hf_dir):
            os.rename(tmp_dir, hf_dir)
        elif not exchange(tmp_dir, hf_dir): # a file system without the swap: two renames, undone by the next export
            os.rename(hf_dir, old_dir)
            os.rename(tmp_dir, hf_dir)
        sync_directory(os.path.dirname(os.path.abspath(hf_dir)))
finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    shutil.rmtree(old_dir, ignore_errors=True)
print(f"exported {ckpt_path} to {hf_dir} ({', '.join(sorted(os.listdir(hf_dir)))}); "
      f"transformers' logits agree with ours to {difference:.1e}", file=out, flush=True)

if push_to_hub is not None:
    from huggingface_hub import HfApi
    try:
        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        url = api.upload_folder(repo_id=push_to_hub, folder_path=hf_dir, commit_message=f"export of {ckpt_path}")
    except Exception as e: # no network, a bad token, a name that is not yours
        raise UserError(f"the export is in {hf_dir}, but pushing it to the Hub repository {push_to_hub} failed "
                        f"({first_line(e)}); try again with network and a valid login: hf upload {push_to_hub} {hf_dir}")
    print(f"pushed to {url}", file=out)
