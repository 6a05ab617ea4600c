"""
Prepare your own text for training: writes data/NAME/train.bin and val.bin
(token ids as uint16) and, for --tokenizer char, meta.pkl; then train with
`python train.py --dataset=NAME`.

--input is a text file, a directory (every *.txt below it, sorted) or a quoted
glob pattern such as 'books/**/*.md'. Files must be UTF-8; each file is one
document.
  char: one token per character; the vocabulary is the sorted set of characters
        in the input (at most 65,536) and goes to meta.pkl, as in shakespeare_char.
  gpt2: tiktoken's GPT-2 BPE (encode_ordinary), with <|endoftext|> (id 50256)
        appended after each document. Uses --num_proc worker processes.
The documents are concatenated in order into one token stream: its first
(1 - val_fraction) goes to train.bin, the last val_fraction to val.bin.
Files are read a few MB at a time, so memory does not grow with the input.
"""
import argparse
import codecs
import glob
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for corpus
import errors  # noqa: E402
errors.install()
from corpus import disk_full_is_a_user_error, encode_texts, map_in_order  # noqa: E402
from tokenizer import gpt2_encoding  # noqa: E402

CHUNK_BYTES = 4 * 2**20  # read files this many bytes at a time
MAX_CHAR_VOCAB = 2**16  # ids 0..65535 fit in uint16

# the end of a non-space followed by a space or newline, as late in the text as possible (see split_point)
last_word_end = re.compile(r'.*\S(?=[ \t\r\n])', re.S)


def find_files(pattern):
    """The files named by a path, a directory (its *.txt, recursively) or a glob pattern, sorted."""
    if os.path.isfile(pattern):
        return [pattern]
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, '**', '*.txt')
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


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
        sys.exit(f"error: could not read {path}: {e.strerror}")
    with f:
        while True:
            block = f.read(chunk_bytes)
            carried = len(decoder.getstate()[0])  # bytes of a character cut by the previous block's end
            try:
                text += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                sys.exit(f"error: {path} is not valid UTF-8 (byte offset {offset - carried + e.start})")
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
    for path in files:
        yield from read_pieces(path, chunk_bytes)


def codepoints(text):
    return np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32)


def scan_chars(files):
    """The sorted characters that occur in files, as an array of code points (first pass of char)."""
    seen = np.zeros(0x110000, dtype=bool)
    with tqdm(desc='scanning characters', unit='char', unit_scale=True, disable=None) as bar:
        for text, _ in read_documents(files):
            seen[codepoints(text)] = True
            bar.update(len(text))
    return np.flatnonzero(seen)


def encode_chars(pieces, chars):
    """Yield the char-level ids of each piece: the index of each character in chars."""
    ids_of = np.zeros(0x110000, dtype=np.uint16)  # code point -> id, a lookup table of 2 MB
    ids_of[chars] = np.arange(len(chars))
    for text, _ in pieces:
        yield ids_of[codepoints(text)]


def encode_gpt2(pieces, num_proc):
    """Yield the GPT-2 ids of each piece, in order, encoded by num_proc worker processes;
    <|endoftext|> (50256) follows the last piece of each document."""
    gpt2_encoding()  # without the BPE files, fail here in one line, before any worker starts
    with Pool(num_proc) as pool:
        tasks = (([text], [is_last]) for text, is_last in pieces)
        for _, (ids, _) in map_in_order(pool, encode_texts, tasks, num_proc):
            yield ids


def write_tokens(ids_stream, path):
    """Append every array of ids_stream to path; return how many tokens were written (not 0: no text is an error)."""
    n = 0
    with open(path, 'wb') as f, tqdm(desc='encoding', unit='tok', unit_scale=True, disable=None) as bar:
        for ids in ids_stream:
            f.write(ids.data)  # not tofile: its short writes on a full disk carry no errno
            n += len(ids)
            bar.update(len(ids))
    if n == 0:
        sys.exit("error: the input has no text")
    return n


def split_train_val(tokens_path, train_path, val_path, n_train):
    """Move the tokens after the first n_train into val_path; what is left becomes train_path."""
    with open(tokens_path, 'rb') as src, open(val_path, 'wb') as dst:
        src.seek(2 * n_train)  # uint16: 2 bytes a token
        shutil.copyfileobj(src, dst, CHUNK_BYTES)
    os.truncate(tokens_path, 2 * n_train)
    os.replace(tokens_path, train_path)


def prepare(files, tokenizer, val_fraction, num_proc, work_dir):
    """Encode files into work_dir/train.bin, val.bin (and meta.pkl for char); return (n_train, n_val)."""
    tokens_path = os.path.join(work_dir, 'tokens.bin')
    if tokenizer == 'char':
        chars = scan_chars(files)
        if len(chars) > MAX_CHAR_VOCAB:
            sys.exit(f"error: the input has {len(chars):,} distinct characters; "
                     f"char ids are uint16, which holds at most {MAX_CHAR_VOCAB:,}")
        n = write_tokens(encode_chars(read_documents(files), chars), tokens_path)
        chars = [chr(c) for c in chars]
        meta = {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {ch: i for i, ch in enumerate(chars)}}
        with open(os.path.join(work_dir, 'meta.pkl'), 'wb') as f:
            pickle.dump(meta, f)
        print(f"vocab size: {len(chars):,}")
    else:
        n = write_tokens(encode_gpt2(read_documents(files), num_proc), tokens_path)
    n_train = int(n * (1 - val_fraction))  # as nanoGPT's int(n*0.9) for val_fraction 0.1
    n_val = n - n_train
    if n_train == 0 or n_val == 0:
        sys.exit(f"error: {n:,} tokens are too few to split with --val_fraction {val_fraction}: "
                 f"{'val' if n_val == 0 else 'train'} would be empty")
    split_train_val(tokens_path, os.path.join(work_dir, 'train.bin'), os.path.join(work_dir, 'val.bin'), n_train)
    return n_train, n_val


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help="a text file, a directory of *.txt, or a quoted glob pattern")
    parser.add_argument('--name', required=True, help="dataset name: writes DATA_DIR/NAME, trains with --dataset=NAME")
    parser.add_argument('--tokenizer', choices=['char', 'gpt2'], default='char', help="default: char")
    parser.add_argument('--val_fraction', type=float, default=0.1, help="the last part of the tokens kept for val (default: 0.1)")
    parser.add_argument('--num_proc', type=int, default=os.cpu_count() or 1, help="gpt2 worker processes (default: all cores)")
    parser.add_argument('--data_dir', default=os.path.dirname(os.path.abspath(__file__)),
                        help="where the NAME folder goes (default: this repo's data/)")
    args = parser.parse_args()

    # catch what a user can get wrong before any work is done
    if not 0 < args.val_fraction < 1:
        sys.exit(f"error: --val_fraction must be between 0 and 1, got {args.val_fraction}")
    if args.num_proc < 1:
        sys.exit(f"error: --num_proc must be at least 1, got {args.num_proc}")
    if args.name in ('', '.', '..') or os.path.basename(args.name) != args.name:
        sys.exit(f"error: --name must be a plain folder name, got {args.name!r}")
    files = find_files(args.input)
    if not files and os.path.isdir(args.input):
        sys.exit(f"error: no .txt files in {args.input} (a directory stands for its *.txt, recursively); "
                 f"for other files pass a quoted glob, e.g. --input '{os.path.join(args.input, '**', '*.md')}'")
    if not files:
        sys.exit(f"error: no files match --input {args.input}")
    out_dir = os.path.join(args.data_dir, args.name)
    print(f"{len(files):,} file(s), {sum(os.path.getsize(p) for p in files):,} bytes -> {out_dir}")

    # work in a temporary folder beside out_dir and move the finished files in at the end,
    # so a failed or interrupted run leaves out_dir as it was
    os.makedirs(args.data_dir, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix=f'.{args.name}.', suffix='.tmp', dir=args.data_dir)
    try:
        t0 = time.time()
        with disk_full_is_a_user_error(args.data_dir, "free some space and run again"):
            n_train, n_val = prepare(files, args.tokenizer, args.val_fraction, args.num_proc, work_dir)
        dt = time.time() - t0
        os.makedirs(out_dir, exist_ok=True)
        outputs = ['train.bin', 'val.bin'] + (['meta.pkl'] if args.tokenizer == 'char' else [])
        for name in outputs:
            os.replace(os.path.join(work_dir, name), os.path.join(out_dir, name))
        stale_meta = os.path.join(out_dir, 'meta.pkl')
        if args.tokenizer == 'gpt2' and os.path.exists(stale_meta):
            os.remove(stale_meta)  # left by an earlier char run, it would make train.py use the char vocab
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"train has {n_train:,} tokens")
    print(f"val has {n_val:,} tokens")
    print(f"wrote {', '.join(outputs)} to {out_dir} in {dt:.1f}s ({(n_train + n_val) / dt:,.0f} tokens/s)")
    print(f"train with: python train.py --dataset={args.name}")


if __name__ == '__main__':
    main()
