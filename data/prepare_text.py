"""
Prepare your own text for training: writes data/NAME/train.bin and val.bin
(token ids as uint16) and, for --tokenizer char or bpe, meta.pkl; then train
with `python train.py --dataset=NAME`.

--input is a text file, a directory (every *.txt below it, sorted) or a quoted
glob pattern such as 'books/**/*.md'. Files must be UTF-8 text; each file is one
document.
  char: one token per character; the vocabulary is the sorted set of characters
        in the input (at most 65,536) and goes to meta.pkl, as in shakespeare_char.
  gpt2: GPT-2 BPE (tiktoken's encode_ordinary ids; gigatoken's, checked against
        tiktoken, with --bpe auto or gigatoken), with <|endoftext|> (id 50256)
        appended after each document. Uses --num_proc worker processes.
  bpe:  a byte-level BPE of --vocab_size tokens trained on the input (GPT-2's
        split; rustbpe, on an evenly spread sample of --tokenizer_mb MB), then
        encoded as gpt2 is, <|endoftext|> (the last id) after each document; the
        BPE goes to meta.pkl, and from there into every checkpoint and export.
  PATH: the meta.pkl of a dataset prepared with bpe: its BPE, encoded as bpe is
        (more data of the same vocabulary: a finetuning set, another split).
The documents are concatenated in order into one token stream: its first
(1 - val_fraction) goes to train.bin, the last val_fraction to val.bin.
Files are read a megabyte at a time, so memory does not grow with the input.
stdout holds what was written and a command that trains on it in minutes on this
machine; notes and progress go to stderr.
"""
import codecs
import os
import re
import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))  # the repo root (see corpus.py)
import corpus  # noqa: E402
import errors  # noqa: E402
import tokenizer  # noqa: E402
from errors import UserError  # noqa: E402

CHUNK_BYTES = corpus.TASK_BYTES  # read files this many bytes at a time: a piece is a worker's task
TRAINING_PIECE_BYTES = 2**16  # the pieces a BPE is trained on: rustbpe holds tokenizer.TRAINER_BUFFER at once

# the end of a non-space followed by a space or newline, as late in the text as possible (see split_point)
last_word_end = re.compile(r'.*\S(?=[ \t\r\n])', re.S)


def split_point(text):
    """
    The last index where text can be cut without changing its GPT-2 encoding, or -1.
    GPT-2's pre-tokenizer never joins a non-space with the whitespace after it, and what
    it does from there on depends only on the text that follows; so cutting right after
    a non-space, before whitespace, encodes the same as the uncut text. (Cutting after a
    newline does not: 'a\\n\\nb' is [64, 198, 198, 65] but 'a\\n\\n' + 'b' is [64, 628] + [65].)
    """
    m = last_word_end.match(text)  # match, not search: one backwards scan from the end
    return m.end() if m else -1


def read_pieces(path, chunk_bytes=CHUNK_BYTES):
    """Yield (text, is_last) pieces of a UTF-8 file, about chunk_bytes each, cut at split points."""
    decoder = codecs.getincrementaldecoder('utf-8')()
    text = ''
    offset = 0  # bytes of the file read so far
    try:
        f = open(path, 'rb')
    except OSError as e:
        raise UserError(f"could not read {path}: {e.strerror}")
    with f:
        while True:
            block = f.read(chunk_bytes)
            nul = block.find(b'\0')
            if nul >= 0:  # no text holds one: a binary file (UTF-16 text too)
                raise UserError(f"{path} is not text: it holds a NUL byte (byte offset {offset + nul})")
            carried = len(decoder.getstate()[0])  # bytes of a character cut by the previous block's end
            try:
                text += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise UserError(f"{path} is not valid UTF-8 (byte offset {offset - carried + e.start})") from None
            offset += len(block)
            if not block:
                break
            cut = split_point(text)
            if cut <= 0 and len(text) > 4 * chunk_bytes:
                cut = len(text)  # megabytes without whitespace: cut anyway, to bound memory
            if cut > 0:
                yield text[:cut], False
                text = text[cut:]
    if offset > 0:
        yield text, True


def read_documents(files, chunk_bytes=CHUNK_BYTES):
    """Yield (file number, piece number, text, is_last) for each piece of each file, in order."""
    for i, path in enumerate(files):
        for k, (text, is_last) in enumerate(read_pieces(path, chunk_bytes)):
            yield i, k, text, is_last


def codepoints(text):
    return np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32)


def scan_chars(files):
    """The sorted characters that occur in files, as an array of code points (first pass of char)."""
    seen = np.zeros(0x110000, dtype=bool)
    with tqdm(desc='scanning characters', unit='char', unit_scale=True, disable=None) as bar:
        for *_, text, _ in read_documents(files):
            seen[codepoints(text)] = True
            bar.update(len(text))
    return np.flatnonzero(seen)


def encode_chars(pieces, chars):
    """Yield the char-level ids of each piece: the index of each character in chars."""
    ids_of = np.zeros(0x110000, dtype=np.uint16)  # code point -> id, a lookup table of 2 MB
    ids_of[chars] = np.arange(len(chars))
    for *_, text, _ in pieces:
        yield ids_of[codepoints(text)]


def encode_bpe(files, bpe, num_proc, chunk_bytes=CHUNK_BYTES):
    """Yield the BPE ids of each piece of files, in order, encoded by num_proc worker processes with bpe (a
    tokenizer.ExactBPE); <|endoftext|> follows the last piece of each document."""
    # the guard (see tokenizer.guarded) counts the pieces as the tasks of one file, the input: it checks the first
    # GUARD_FIRST_TASKS pieces whole, whatever the files
    tasks = (([text], [is_last], 0, n, files[i])
             for n, (i, _, text, is_last) in enumerate(read_documents(files, chunk_bytes)))
    try:
        with corpus.worker_pool(num_proc, bpe) as pool:
            for _, (ids, _) in corpus.map_in_order(pool, corpus.encode_texts, tasks, num_proc,
                                                   "run the same command again"):
                yield ids
    except tokenizer.Mismatch as e:
        raise tokenizer.Mismatch(f"{e}; run the same command with --bpe tiktoken") from None


def sample_pieces(files, sample_bytes, counts):
    """An evenly spread sample of the text of files, about sample_bytes of it (all of it when there is less): pieces
    of about 64 kB, each taken while the sample is behind its share of the text read so far. counts['read'] and
    counts['taken'] add up the bytes of the pieces read and taken."""
    share = sample_bytes / max(1, sum(os.path.getsize(p) for p in files))
    for *_, text, _ in read_documents(files, TRAINING_PIECE_BYTES):
        size = len(text.encode('utf-8'))
        counts['read'] += size
        if counts['taken'] < share * counts['read']:
            counts['taken'] += size
            yield text


def train_tokenizer(files, args):
    """The BPE of --vocab_size tokens trained on a sample of --tokenizer_mb MB of files (see sample_pieces)."""
    counts = {'read': 0, 'taken': 0}
    t0 = time.time()
    vocab = tokenizer.train_bpe(sample_pieces(files, args.tokenizer_mb * 10**6, counts), args.vocab_size,
                                args.num_proc)
    print(f"trained a BPE of {args.vocab_size:,} tokens on {counts['taken']:,} bytes of the input's "
          f"{counts['read']:,} ({counts['taken'] / counts['read']:.0%}) in {time.time() - t0:.1f}s")
    return vocab


def write_tokens(ids_stream, path):
    """Append every array of ids_stream to path; return how many tokens were written (not 0: no text is an error)."""
    n = 0
    with open(path, 'wb') as f, tqdm(desc='encoding', unit='tok', unit_scale=True, disable=None) as bar:
        for ids in ids_stream:
            f.write(ids.data)  # not tofile: its short writes on a full disk carry no errno
            n += len(ids)
            bar.update(len(ids))
    if n == 0:
        raise UserError("the input has no text")
    return n


def split_train_val(train_path, val_path, n_train):
    """Move the tokens of train_path after the first n_train into val_path."""
    with open(train_path, 'rb') as src, open(val_path, 'wb') as dst:
        src.seek(2 * n_train)  # uint16: 2 bytes a token
        shutil.copyfileobj(src, dst, CHUNK_BYTES)
    os.truncate(train_path, 2 * n_train)


def prepare(files, args, bpe, built):
    """Encode files into the paths built names (train.bin, val.bin and, for char and bpe, meta.pkl); return
    (n_train, n_val, vocab_size)."""
    if args.tokenizer == 'char':
        chars = scan_chars(files)
        if len(chars) > corpus.MAX_CHAR_VOCAB:
            raise UserError(f"the input has {len(chars):,} distinct characters; "
                            f"char ids are uint16, which holds at most {corpus.MAX_CHAR_VOCAB:,}")
        n = write_tokens(encode_chars(read_documents(files), chars), built['train.bin'])
        corpus.write_meta(built['meta.pkl'], tokenizer.char_vocab([chr(c) for c in chars]))
        print(f"vocab size: {len(chars):,}")
        vocab_size = len(chars)
    else:
        if 'meta.pkl' in built:  # first: a full disk while saving the BPE is met before minutes of encoding
            corpus.write_meta(built['meta.pkl'], bpe.vocab)
        n = write_tokens(encode_bpe(files, bpe, args.num_proc), built['train.bin'])
        vocab_size = bpe.vocab['vocab_size']
    n_train = int(n * (1 - args.val_fraction))  # as nanoGPT's int(n*0.9) for val_fraction 0.1
    n_val = n - n_train
    if n_train == 0 or n_val == 0:
        raise UserError(f"{n:,} tokens are too few to split with --val_fraction {args.val_fraction}: "
                        f"{'val' if n_val == 0 else 'train'} would be empty")
    split_train_val(built['train.bin'], built['val.bin'], n_train)
    return n_train, n_val, vocab_size


def options():
    return corpus.parse_args(__doc__, input=..., name=..., tokenizer='char', vocab_size=32768, tokenizer_mb=1000,
                             val_fraction=0.1, num_proc=os.cpu_count() or 1, bpe='auto',
                             data_dir=os.path.dirname(os.path.abspath(__file__)))


def main():
    errors.install()
    args = options()
    out = errors.result_stream()  # what was written (report_dataset); notes and progress go to stderr
    files = corpus.find_files(args.input, '.txt', '--input')
    out_dir = os.path.join(args.data_dir, args.name)
    print(f"{len(files):,} file(s), {sum(os.path.getsize(p) for p in files):,} bytes -> {out_dir}")
    t0 = time.time()
    # the BPE is chosen, or trained, before anything is written (GPT-2's files may be missing offline)
    vocab = corpus.in_child_process(train_tokenizer, files, args) if args.tokenizer == 'bpe' else \
        corpus.given_vocab(args)
    bpe = tokenizer.choose_bpe(args.bpe, vocab) if vocab else None
    if bpe:
        print(f"tokenizing with {bpe.name}" + (" (checked against tiktoken as it goes)" if bpe.fast else ""))

    # everything is built under temp names in out_dir and moves in at the end: a failed or interrupted run leaves
    # out_dir as it was. The vocabulary of a char or trained-BPE dataset is its meta.pkl: one left by an earlier run
    # would make train.py read a gpt2 dataset with it
    gpt2 = vocab == tokenizer.GPT2_VOCAB
    outputs = ['train.bin', 'val.bin'] + ([] if gpt2 else ['meta.pkl'])
    with corpus.new_dataset(out_dir, outputs, remove=('meta.pkl',) if gpt2 else ()) as built:
        n_train, n_val, vocab_size = prepare(files, args, bpe, built)
    corpus.report_dataset(out, out_dir, outputs, {'train': n_train, 'val': n_val}, time.time() - t0, vocab_size)


if __name__ == '__main__':
    main()
