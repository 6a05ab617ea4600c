"""
The trainers of a byte-level BPE side by side, on the same text and settings: rustbpe (nanochat's, the one that
data/prepare_text.py --tokenizer bpe uses), bpeasy, and Hugging Face's tokenizers. Each trains in a fresh process,
in turns, --rounds times, on the same documents (the installed packages' sources and documentation cut as web
documents are, as bench/prepare_web.py makes them), streamed from a parquet file, with GPT-2's split, --vocab_size
tokens (<|endoftext|> included) and --threads threads. Reported: the wall time of the training, the peak memory
of its process (bench/memory.py), whether every round gave the same merges, and the bytes a token holds on the
first 10 MB of the text (more is better: fewer tokens for the same text).

    pip install bpeasy                   # the others are in requirements.txt
    python bench/train_bpe.py [--mb 100] [--vocab_size 32768] [--threads 2] [--rounds 2]
    python bench/train_bpe.py --trainers rustbpe --mb 300    # how rustbpe's time and memory grow with the text
"""
import argparse
import hashlib
import json
import os
import pickle
import statistics
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))  # the repo root, for tokenizer
import tokenizer  # noqa: E402
from memory import peak_memory  # noqa: E402
from prepare_web import write_documents  # noqa: E402

TRAINERS = ('rustbpe', 'bpeasy', 'tokenizers')
BPEASY_MAX_TOKEN_BYTES = 128  # bpeasy's cap on a token's length; the others have none, and 128 is rarely met


def documents(path):
    import pyarrow.parquet as pq
    for batch in pq.ParquetFile(path).iter_batches(1000, columns=['text']):
        yield from batch.column(0).to_pylist()


def train(trainer, path, vocab_size):
    """The token bytes, by rank, that trainer learns from the documents in path: vocab_size - 1 of them, the bytes
    first, leaving room for <|endoftext|>."""
    if trainer == 'rustbpe':
        return tokenizer.train_bpe(documents(path), vocab_size, os.environ['RAYON_NUM_THREADS'])['tokens']
    if trainer == 'bpeasy':
        import bpeasy
        ranks = bpeasy.train_bpe(documents(path), tokenizer.GPT2_PATTERN, BPEASY_MAX_TOKEN_BYTES, vocab_size - 1)
        return [token for token, _ in sorted(ranks.items(), key=lambda ranked: ranked[1])]
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(tokenizer.GPT2_PATTERN), 'isolated'),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.train_from_iterator(documents(path), trainers.BpeTrainer(
        vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    names = sorted(hf.get_vocab().items(), key=lambda named: named[1])
    tokens = [bytes(tokenizer.CHAR_BYTE[c] for c in name) for name, _ in names]
    return sorted(tokens[:256]) + tokens[256:]  # its alphabet is in the order of its characters, not of the bytes


def run(trainer, path, vocab_size, threads, out):
    """trainer in a process of its own: (seconds, peak RSS in MB, its tokens)."""
    env = {**os.environ, 'RAYON_NUM_THREADS': str(threads), 'RAYON_RS_NUM_THREADS': str(threads),
           'TOKENIZERS_PARALLELISM': 'true'}
    code, rss, _ = peak_memory([sys.executable, __file__, '--child', trainer, '--parquet', path, '--vocab_size',
                                str(vocab_size), '--out', out], env=env)
    assert code == 0, trainer
    with open(out, 'rb') as f:
        seconds, tokens = pickle.load(f)
    return seconds, rss, tokens


def bytes_per_token(tokens, texts):
    ranks = {token: rank for rank, token in enumerate(tokens)}
    import tiktoken
    encoding = tiktoken.Encoding('bench', pat_str=tokenizer.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return sum(len(t.encode('utf-8')) for t in texts) / sum(map(len, encoding.encode_ordinary_batch(texts)))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mb', type=int, default=100, help="megabytes of text (default: 100)")
    parser.add_argument('--vocab_size', type=int, default=32768)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--trainers', nargs='+', default=list(TRAINERS), choices=TRAINERS)
    parser.add_argument('--child', choices=TRAINERS, help=argparse.SUPPRESS)  # a trainer's own process
    parser.add_argument('--parquet', help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        t0 = time.time()
        tokens = train(args.child, args.parquet, args.vocab_size)
        with open(args.out, 'wb') as f:
            pickle.dump((time.time() - t0, tokens), f)
        sys.exit()

    with tempfile.TemporaryDirectory() as tmp:
        num_docs, size = write_documents(tmp, args.mb, 1)
        path = os.path.join(tmp, '000.parquet')
        print(f"{num_docs:,} documents, {size / 1e6:,.0f} MB, vocab_size {args.vocab_size:,}, {args.threads} threads, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
        results = {trainer: [] for trainer in args.trainers}
        for r in range(args.rounds):
            for trainer in args.trainers[r % len(args.trainers):] + args.trainers[:r % len(args.trainers)]:
                seconds, rss, tokens = run(trainer, path, args.vocab_size, args.threads, os.path.join(tmp, 'out.pkl'))
                results[trainer].append((seconds, rss, tokens))
                print(f"round {r}: {trainer:>10} {seconds:7.1f} s {rss:7,.0f} MB peak RSS, {len(tokens):,} tokens "
                      f"(sha256 {hashlib.sha256(b''.join(tokens)).hexdigest()[:12]}), load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
        texts, held = [], 0
        for text in documents(path):
            texts.append(text)
            held += len(text.encode('utf-8'))
            if held > 10**7:
                break
        print(f"\n| trainer | wall time (median of {args.rounds}) | peak memory (RSS) | the same merges every round "
              f"| bytes a token, first 10 MB |\n|---|---|---|---|---|")
        for trainer, runs in results.items():
            same = all(tokens == runs[0][2] for *_, tokens in runs)
            print(f"| {trainer} | {statistics.median(s for s, _, _ in runs):.1f} s | "
                  f"{statistics.median(m for _, m, _ in runs):,.0f} MB | {'yes' if same else 'no'} | "
                  f"{bytes_per_token(runs[0][2], texts):.3f} |")
        print(json.dumps({trainer: [tokens == results[args.trainers[0]][0][2] for *_, tokens in runs]
                          for trainer, runs in results.items()}), "(the same merges as the first trainer's)")
