"""
HellaSwag (https://rowanzellers.com/hellaswag/): pick the right one of 4 endings for a context, on the 10,042
examples of the validation set. Scored the "completion" way, as Karpathy's build-nanogpt does: the model reads
context + ending and we take its cross-entropy loss on the ending's tokens. acc_norm picks the ending with the
lowest average per-token loss (the main number; it does not favour short endings), acc the lowest summed loss.
$ python eval_hellaswag.py --init_from=resume --out_dir=out
$ python eval_hellaswag.py --init_from=gpt2
train.py runs evaluate_hellaswag() every eval_interval when hellaswag=True.
stdout holds the score alone; notes and progress go to stderr.
"""

import json
import os
import sys

import torch
from torch.nn import functional as F
from tqdm import tqdm

import errors
import hardware
from checkpoint import load_model, model_path, no_checkpoint
from configurator import at_least, configure
from errors import UserError
from fileio import download, read_text
from parallel import share
from tokenizer import Tokenizer, describe, encodes_any_text


DEFAULT_FILE = os.path.join('data', 'hellaswag', 'hellaswag_val.jsonl')
URL = 'https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl'


def load_examples(path, url=URL):
    """The examples of a HellaSwag JSONL file, each a dict with 'ctx', 'endings' (4 strings) and 'label' (0-3).
    The official set is downloaded from url when path is DEFAULT_FILE and absent; any other path must exist,
    so that a mistyped name is an error rather than a download of the official set under that name."""
    is_default = os.path.abspath(path) == os.path.abspath(DEFAULT_FILE)
    if not os.path.exists(path):
        if not is_default:
            raise UserError(f"no HellaSwag file at {path}; check the path, or leave out --hellaswag_file to "
                            f"download the official set to {DEFAULT_FILE}")
        download(url, path, f"download it yourself and put it at {path}, or point --hellaswag_file at a copy")
    # only the downloaded file can be fetched again; one the user named is theirs to fix
    fix = "delete the file to download it again" if is_default else "fix the file or point --hellaswag_file at another"
    examples = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
            ok = (isinstance(example['ctx'], str) and example['label'] in (0, 1, 2, 3)
                  and len(example['endings']) == 4 and all(isinstance(e, str) for e in example['endings']))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UserError(f"{path} line {lineno} is not a HellaSwag example (JSON with ctx, 4 endings and a "
                            f"label 0-3); {fix}")
        examples.append(example)
    if not examples:
        raise UserError(f"{path} holds no examples; {fix}")
    return examples


def render_example(example, tokenizer, block_size):
    """The model's input for the 4 candidates of an example, padded to one length T:
    idx (4, T), context + ending, and targets (4, T), the next token where it belongs to the ending, else -1.
    A row longer than the model's block_size keeps its last tokens: the context is cut, and only an ending of
    more than block_size tokens (tiny models alone) loses its first tokens."""
    ctx = tokenizer.encode(example['ctx'])
    rows = []
    for ending in example['endings']:
        end = tokenizer.encode(" " + ending)  # GPT-2's BPE puts the space before a word into the word's token
        tokens = (ctx + end)[-(block_size + 1):]  # the last token is only a target, so block_size + 1 fit
        n_ctx = len(tokens) - len(end)  # 0 or less when the ending itself was cut
        rows.append((tokens[:-1], [t if i + 1 >= n_ctx else -1 for i, t in enumerate(tokens[1:])]))
    T = max(len(x) for x, _ in rows)
    idx = torch.zeros(4, T, dtype=torch.long)
    targets = torch.full((4, T), -1, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        idx[i, :len(x)] = torch.tensor(x)
        targets[i, :len(y)] = torch.tensor(y)
    return idx, targets


@torch.no_grad()
def score_example(model, example, tokenizer, device, autocast_ctx):
    """The summed and the average per-token loss (each (4,)) of the 4 endings of an example."""
    idx, targets = render_example(example, tokenizer, model.config.block_size)
    idx, targets = idx.to(device), targets.to(device)
    with autocast_ctx:
        logits, _ = model(idx, targets)  # targets make the model return the logits of every position
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1, reduction='none')
    sum_loss = losses.view(targets.shape).sum(dim=1)  # ignored positions have a loss of 0
    return sum_loss, sum_loss / (targets != -1).sum(dim=1)


def for_training(path, vocab):
    """train.py's hellaswag=True: the examples at path and the Tokenizer of vocab, the vocabulary of the model, which
    must encode any text (a byte-level BPE)."""
    if not encodes_any_text(vocab):
        raise UserError(f"hellaswag=True needs a model of a byte-level BPE (GPT-2's or a trained one), which encodes "
                        f"any text; this one learns {describe(vocab)}: use --hellaswag=False")
    return load_examples(path), Tokenizer(vocab)


def evaluate_hellaswag(model, examples, device, autocast_ctx, rank=0, world_size=1, tokenizer=None, stopping=None):
    """Accuracy of model (a GPT, or a torch.compile of one; not the DDP wrapper) on examples, its text encoded by
    tokenizer (None: GPT-2's BPE): returns dict(acc=, acc_norm=, n=) over all of them. Under DDP or FSDP every rank
    calls this: each scores its share of the examples (parallel.share: under FSDP all score equally many, some one
    more that is not counted) and the counts are summed over ranks. The model is left in the mode it came in.
    stopping(), asked before each example (in every process alike), ends the evaluation early: it returns None."""
    tokenizer = tokenizer or Tokenizer()
    if model.config.vocab_size < tokenizer.vocab_size or not tokenizer.encodes_any_text:
        raise UserError(f"HellaSwag needs a model of a byte-level BPE (GPT-2's or a trained one, which encode any "
                        f"text) and its tokenizer; this one has {model.config.vocab_size} token ids and "
                        f"{tokenizer.source} ({tokenizer.vocab_size} tokens): a character-level model?")
    was_training = model.training
    model.eval()
    n = correct = correct_norm = 0
    progress = tqdm(list(share(len(examples), rank, world_size)), desc="hellaswag", disable=True if rank != 0 else None)
    for i, counted in progress:
        if stopping is not None and stopping():
            model.train(was_training)
            return None
        example = examples[i]
        sum_loss, avg_loss = score_example(model, example, tokenizer, device, autocast_ctx)
        if not counted:
            continue
        n += 1
        correct += int(sum_loss.argmin().item() == example['label'])
        correct_norm += int(avg_loss.argmin().item() == example['label'])
        progress.set_postfix(acc_norm=f"{correct_norm / n:.4f}", refresh=False)
    model.train(was_training)
    if world_size > 1:
        counts = torch.tensor([n, correct, correct_norm], dtype=torch.long, device=device)
        torch.distributed.all_reduce(counts)
        n, correct, correct_norm = counts.tolist()
    return dict(acc=correct / n, acc_norm=correct_norm / n, n=n)


if __name__ == '__main__':
    errors.install()
    # -----------------------------------------------------------------------------
    init_from: str = 'resume'  # 'resume' (out_dir/ckpt.pt), a GPT-2 ('gpt2' ... 'gpt2-xl') or a transformers directory
    out_dir: str = 'out'  # the training run to evaluate, with --init_from=resume
    hellaswag_file: str = DEFAULT_FILE  # downloaded when absent; a file named here instead must exist
    max_examples: at_least(0) = 0  # evaluate the first max_examples examples; 0: all 10,042
    device: str = hardware.default_device()  # 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: hardware.DTYPES = None  # 'float32', 'bfloat16' or 'float16'; None: the best the device supports
    compile: bool = False  # torch.compile the model: faster on a GPU after a slow start
    configure(globals(), sys.argv[1:], explain=hardware.explain)
    # -----------------------------------------------------------------------------
    out = errors.result_stream()  # the score; everything else goes to stderr

    dtype, ctx = hardware.setup(device, dtype)
    if init_from == 'resume' and not os.path.exists(path := model_path(out_dir)):  # before a download of minutes
        no_checkpoint(path)
    examples = load_examples(hellaswag_file)  # before the model, which can take long to load
    if max_examples:
        examples = examples[:max_examples]

    model, tokenizer, _ = load_model(init_from, out_dir)
    model.to(device)
    if compile:
        model = torch.compile(model, dynamic=True)  # every example has its own length: one graph for all

    result = evaluate_hellaswag(model, examples, device, ctx, tokenizer=tokenizer)
    print(f"HellaSwag on {result['n']} examples: acc_norm {result['acc_norm']:.4f} (lowest average per-token loss "
          f"of the ending), acc {result['acc']:.4f} (lowest summed loss)", file=out)
