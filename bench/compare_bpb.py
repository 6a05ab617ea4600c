"""
Characters, GPT-2's BPE and a BPE trained on the text, compared in bits per byte of the same text: for each, the
data script, train.py at the quick start's compute (config/train_shakespeare_char_cpu.py: a 4-layer, 128-wide GPT,
2000 iterations of 12 x 64 tokens), and a final evaluation on --eval_iters batches of each split (the quick start's
20 estimate the loss to +-0.015 nats). Every command is printed as it runs, so that any step can be run alone.

    python bench/compare_bpb.py --text shakespeare --vocab_size 1024        # tiny Shakespeare
    python bench/compare_bpb.py --text web --mb 20 --vocab_size 8192        # web-like text (bench/prepare_web.py's)
    python bench/compare_bpb.py --tokenizers gpt2 --work DIR               # one of them (the same DIR: the table)

All three tokenizations take the same text and split it alike (data/prepare_text.py: the last 10% of the tokens go
to val.bin, which is the last ~10% of the text whichever the tokenizer); the models differ only in their vocabulary
(and the embedding it takes). Losses in nats per token cannot be compared across vocabularies; bits per byte can.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, repo)
from corpus import TINY_SHAKESPEARE_URL  # noqa: E402
from fileio import download  # noqa: E402
from prepare_web import write_documents  # noqa: E402

QUICK_START = os.path.join(repo, 'config', 'train_shakespeare_char_cpu.py')
QUICK_START_ITERS = 2000


def run(command, cwd):
    print("$ " + shlex.join(command), flush=True)
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def evaluations(out_dir):
    """((the training's evaluation at its last iteration, the final evaluation), the records) of out_dir's log.jsonl;
    None for those not there yet."""
    try:
        with open(os.path.join(out_dir, 'log.jsonl')) as f:
            records = [json.loads(line) for line in f]
    except OSError:
        return (None, None), []
    last = [r for r in records if 'val_bpb' in r and r['iter'] == QUICK_START_ITERS]
    return (last[0] if last else None, last[1] if len(last) > 1 else None), records


def text_files(args, work):
    """The input files: tiny Shakespeare, or --mb of web-like text as 100 .txt files of documents."""
    if args.text == 'shakespeare':
        shared = os.path.join(os.path.dirname(repo), 'shared', 'data', 'tinyshakespeare', 'input.txt')
        if os.path.exists(shared):  # the tests' copy
            return shared
        path = os.path.join(work, 'input.txt')
        download(TINY_SHAKESPEARE_URL, path, "put tiny Shakespeare at ../shared/data/tinyshakespeare/input.txt")
        return path
    import pyarrow.parquet as pq
    src = os.path.join(work, f'web{args.mb}')
    if os.path.isdir(src):  # made by an earlier run in work
        return src
    os.makedirs(src)
    write_documents(src, args.mb, 1)
    docs = pq.read_table(os.path.join(src, '000.parquet')).column('text').to_pylist()
    for k in range(100):  # each file a document to prepare_text: many web documents, joined by blank lines
        with open(os.path.join(src, f'{k:03d}.txt'), 'w', encoding='utf-8') as f:
            f.write('\n\n'.join(docs[k::100]))
    os.remove(os.path.join(src, '000.parquet'))
    return src


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--text', choices=['shakespeare', 'web'], default='shakespeare')
    parser.add_argument('--mb', type=int, default=20, help="--text web: megabytes of it (default: 20)")
    parser.add_argument('--vocab_size', type=int, default=1024, help="the trained BPE's (default: 1024)")
    parser.add_argument('--eval_iters', type=int, default=500, help="batches of the final evaluation (default: 500)")
    parser.add_argument('--tokenizers', nargs='+', choices=['char', 'gpt2', 'bpe'], default=['char', 'bpe', 'gpt2'])
    parser.add_argument('--work', help="where the datasets and runs go (default: a temporary folder); the table "
                                       "gives every run there")
    args = parser.parse_args()

    work = args.work or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    text = text_files(args, work)
    tokenizers = {'char': ['--tokenizer', 'char'], 'gpt2': ['--tokenizer', 'gpt2'],
                  'bpe': ['--tokenizer', 'bpe', '--vocab_size', str(args.vocab_size)]}
    for name in args.tokenizers:
        options = tokenizers[name]
        dataset = f"{args.text}_{f'bpe{args.vocab_size}' if name == 'bpe' else name}"
        out_dir = os.path.join(work, f'out-{dataset}')
        (_, final), _ = evaluations(out_dir)
        if final is not None:
            continue  # done before
        if not os.path.isdir(os.path.join(work, 'data', dataset)):
            run([sys.executable, os.path.join(repo, 'data', 'prepare_text.py'), '--input', text, '--name', dataset,
                 '--data_dir', os.path.join(work, 'data'), *options], work)
        train = [sys.executable, os.path.join(repo, 'train.py'), QUICK_START, f'--dataset={dataset}',
                 f'--out_dir={out_dir}']
        # a run stopped on the way (Ctrl-C, kill) goes on from its checkpoint, exactly
        run(train + (['--init_from=resume'] if os.path.exists(os.path.join(out_dir, 'last.pt')) else []), work)
        run(train + ['--init_from=resume', '--eval_only=True', f'--eval_iters={args.eval_iters}'], work)

    print(f"\n| tokenizer | step {QUICK_START_ITERS}'s val loss, nats a token | final val loss | final val bits per "
          f"byte | final train bits per byte | val.bin tokens | ms an iteration (median) | training time (its "
          f"iterations) |\n|---|---|---|---|---|---|---|---|")
    for out_dir in sorted(d for d in os.listdir(work) if d.startswith(f'out-{args.text}_')):
        (step, final), records = evaluations(os.path.join(work, out_dir))
        if final is None:
            continue  # not done yet
        dataset = out_dir.removeprefix('out-')
        val_tokens = os.path.getsize(os.path.join(work, 'data', dataset, 'val.bin')) // 2
        iterations = {r['iter']: r['dt_ms'] for r in records if 'dt_ms' in r}  # a resumed run's latest
        print(f"| {dataset.removeprefix(args.text + '_')} | {step['val_loss']:.4f} | {final['val_loss']:.4f} | "
              f"**{final['val_bpb']:.4f}** | {final['train_bpb']:.4f} | {val_tokens:,} | "
              f"{statistics.median(iterations.values()):.0f} | {sum(iterations.values()) / 1000:.0f} s |")
    print(f"(final evaluation: {args.eval_iters} batches of 12 x 64 tokens of each split, of the model of the last "
          f"iteration; work in {work})")
