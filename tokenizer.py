"""Every vocabulary in one place: a dataset's characters, GPT-2's BPE, a byte-level BPE trained on the user's own
text, or a tokenizer saved by transformers. Data scripts, training, sampling, HellaSwag and export ask this module;
nothing else knows how a vocabulary is stored.

A vocabulary, as a dataset's meta.pkl holds it and a checkpoint records it under 'vocab' (plain data, so that
torch.load's weights_only reads it):
- characters: {'vocab_size': 65, 'itos': {0: '\\n', ...}, 'stoi': {'\\n': 0, ...}} (nanoGPT's meta.pkl);
- GPT-2's BPE: GPT2_VOCAB, the vocabulary of every dataset without a meta.pkl, as in nanoGPT;
- a trained BPE: {'vocab_size': N, 'bpe': 'trained', 'pattern': GPT2_PATTERN, 'tokens': [b'\\x00', ..., b' the', ...]},
  token id i the bytes tokens[i] (ids 0-255 the bytes themselves, then the merges in the order learnt) and
  <|endoftext|> the last id, N - 1. meta.pkl holds it as it is: nanoGPT's train.py reads its vocab_size.
- a transformers directory: {'vocab_size': N, 'tokenizer': path}, for a tokenizer none of the above.

The BPEs encode exactly as tiktoken does with their ranks (the reference); the data scripts use gigatoken where it is
installed, the same ids faster, checked against tiktoken as they go (ExactBPE, the guard). A trained BPE is learnt by
rustbpe (train_bpe) and exported for transformers (Tokenizer.save_pretrained) to give the same ids and text.
"""

import base64
import hashlib
import json
import os
import pickle
import re
import tempfile

import numpy as np

from errors import UserError, first_line
from fileio import open_committed

EOT = '<|endoftext|>'  # GPT-2's one special token, which ends each document; a trained BPE's too
MAX_VOCAB = 2**16  # token ids are stored as uint16
# tiktoken's gpt2 pat_str, GPT-2's split of text into words before BPE (the same matches as GPT-2's own pattern)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_VOCAB = {'vocab_size': 50257, 'bpe': 'gpt2'}

# ----------------------------------------------------------------------------- vocabularies as plain data


class PlainDataUnpickler(pickle.Unpickler):
    """meta.pkl may come from anywhere, and unpickling can run code: accept plain data alone
    (dicts, lists, strings, bytes, numbers), which needs no class."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it holds a {module}.{name}, which is not plain data")


def load_meta(path, f=None):
    """A dataset's meta.pkl as a vocabulary: characters ({'vocab_size': int, 'itos': {int: str}, 'stoi': {str: int}},
    itos and stoi possibly missing, for a dataset that only says its size) or a trained BPE, checked whole. Read
    from f, path's file opened already, else from path as its folder's last committed change left it."""
    again = "run the dataset's prepare.py again"
    given = f is not None
    f = f or open_committed(path)
    if f is None:
        raise UserError(f"no {path}; run the dataset's prepare.py")
    try:
        f.seek(0)
        meta = PlainDataUnpickler(f).load()
    except Exception as e:  # whatever a truncated or crafted pickle raises
        raise UserError(f"cannot read {path} ({first_line(e)}); {again}")
    finally:
        if not given:
            f.close()
    size = meta.get('vocab_size') if isinstance(meta, dict) else None
    if type(size) is not int or not 1 <= size <= MAX_VOCAB:
        raise UserError(f"{path} has no vocab_size from 1 to {MAX_VOCAB} (uint16 ids); {again}")
    if meta.get('bpe') == 'trained':
        if not is_trained_bpe(meta):
            raise UserError(f"{path} holds a trained BPE that is not whole (the 256 bytes, then distinct merged "
                            f"tokens, one fewer than vocab_size, GPT-2's split); {again}")
        return {k: meta[k] for k in ('vocab_size', 'bpe', 'pattern', 'tokens')}
    itos, stoi = meta.get('itos'), meta.get('stoi')
    if (itos, stoi) != (None, None) and not (
            isinstance(itos, dict) and isinstance(stoi, dict) and len(itos) == len(stoi) == size
            and all(type(i) is int and isinstance(c, str) and stoi.get(c) == i for i, c in itos.items())
            and set(itos) == set(range(size))):
        raise UserError(f"{path} has an itos and stoi that do not map the ids 0..{size - 1} to characters and back; "
                        f"{again}")
    return {k: v for k, v in meta.items() if k in ('vocab_size', 'itos', 'stoi')}


def is_trained_bpe(vocab):
    """Whether vocab is a whole trained BPE: the 256 bytes in order, then distinct merged tokens, one fewer than
    vocab_size (the last id is <|endoftext|>), and GPT-2's split."""
    tokens = vocab.get('tokens')
    return (vocab.get('pattern') == GPT2_PATTERN and isinstance(tokens, list) and type(vocab.get('vocab_size')) is int
            and len(tokens) == vocab['vocab_size'] - 1 and all(type(t) is bytes and t for t in tokens)
            and tokens[:256] == [bytes([b]) for b in range(256)] and len(set(tokens)) == len(tokens))


def encodes_any_text(vocab):
    """Whether vocab gives every text ids: a byte-level BPE's does, characters' only their own."""
    return 'bpe' in vocab


def char_vocab(chars):
    """The vocabulary of the characters chars (sorted): id i is chars[i]."""
    return {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {c: i for i, c in enumerate(chars)}}


def write_meta(f, vocab):
    """Writes vocab to f, a file open for writing in binary, as a dataset's meta.pkl (load_meta reads it)."""
    pickle.dump(vocab, f)


def dataset_vocab(data_dir, meta):
    """The vocabulary of the dataset in data_dir whose meta.pkl is meta (open, as dataloader.open_dataset opened it,
    or None where it has none): its meta.pkl's, or GPT-2's BPE without one, as in nanoGPT."""
    return GPT2_VOCAB if meta is None else load_meta(os.path.join(data_dir, 'meta.pkl'), meta)


def check_vocab(learnt, vocab, dataset, source):
    """Raises a UserError when the model from source learnt another vocabulary than dataset's (vocab): its token ids
    would mean other text. learnt None: the model does not say."""
    if learnt is not None and learnt != vocab:
        raise UserError(f"dataset={dataset} has another vocabulary ({describe(vocab)}) than the model from {source} "
                        f"learnt ({describe(learnt)}): its token ids would mean other text; use a dataset of the "
                        f"model's vocabulary, or start a new run")


def fingerprint(vocab):
    """A short digest of a trained BPE's tokens, which tells two of the same size apart in messages and names."""
    return hashlib.sha256(repr((vocab.get('pattern'), vocab.get('tokens'))).encode()).hexdigest()[:12]


def describe(vocab):
    """A vocabulary in a few words, for messages."""
    if vocab.get('bpe') == 'gpt2':
        return "GPT-2's BPE"
    if vocab.get('bpe') == 'trained':
        return f"a BPE of {vocab['vocab_size']} tokens trained on its text (fingerprint {fingerprint(vocab)})"
    if 'tokenizer' in vocab:
        return f"the {vocab['vocab_size']} tokens of the tokenizer in {vocab['tokenizer']}"
    return f"{vocab['vocab_size']} characters"


# ----------------------------------------------------------------------------- the BPEs through tiktoken

# tiktoken's cache names each file by the SHA-1 of its download address
GPT2_BPE_FILES = {'vocab.bpe': '6d1cbeee0f20b3d9449abfede4726ed8212e3aee',
                  'encoder.json': '6c7ea1a7e38e3a7f062df639a5b80947f075ffe6'}


def gpt2_encoding():
    """tiktoken's GPT-2 BPE. tiktoken downloads its two files on first use and keeps them in its cache; offline,
    without that cache, this fails in one line that says how to provide them."""
    import tiktoken
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # requests' errors without a network; whatever a broken cache or proxy gives
        files = ' and '.join(f"{name} as $TIKTOKEN_CACHE_DIR/{sha}" for name, sha in GPT2_BPE_FILES.items())
        raise UserError(f"cannot download GPT-2's BPE files vocab.bpe and encoder.json ({type(e).__name__}); "
                        f"offline, copy tiktoken's cache from a machine that has one and set TIKTOKEN_CACHE_DIR to it, "
                        f"or save {files}")


_trained_encodings = {}  # fingerprint -> tiktoken's Encoding, built once per process


def bpe_encoding(vocab):
    """tiktoken's Encoding of a BPE vocabulary (GPT-2's, or a trained one), with <|endoftext|> as its special token."""
    if vocab.get('bpe') == 'gpt2':
        return gpt2_encoding()
    key = fingerprint(vocab)
    if key not in _trained_encodings:
        import tiktoken
        _trained_encodings[key] = tiktoken.Encoding(
            f"trained-{key}", pat_str=vocab['pattern'], explicit_n_vocab=vocab['vocab_size'],
            mergeable_ranks={token: i for i, token in enumerate(vocab['tokens'])},
            special_tokens={EOT: vocab['vocab_size'] - 1})
    return _trained_encodings[key]


LONG_RUN = 2**17  # a whitespace run of ~1M characters before a non-space exceeds tiktoken's regex backtracking limit
# tiktoken's \s: Unicode's White_Space, which is Python's isspace() less the separators \x1c-\x1f
WHITESPACE = '\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
LONG_WHITESPACE = re.compile(f'(?<![{WHITESPACE}])[{WHITESPACE}]{{{LONG_RUN},}}(?=[^{WHITESPACE}])')


def long_whitespace_cuts(text):
    """Where to cut text so that tiktoken can encode each piece alone and give the ids of the whole. Its regex fails
    (ValueError: backtracking's stack) on a whitespace run of a million characters before a non-space; such a run
    is one pretoken less its last character, which begins the next pretoken: a cut before that character leaves
    every pretoken whole (in GPT-2's split, which every BPE here uses)."""
    # a run of LONG_RUN holds two characters step apart with nothing but whitespace between: look closer only there
    step = LONG_RUN // 2
    if not any(text[p] in WHITESPACE and text[p + step] in WHITESPACE and not text[p:p + step].strip(WHITESPACE)
               for p in range(0, len(text) - step, step)):
        return []
    return [m.end() - 1 for m in LONG_WHITESPACE.finditer(text)]


def without_lone_surrogates(text):
    """text with each lone surrogate (which UTF-8 cannot hold) as U+FFFD, and a pair written as two halves joined:
    what tiktoken's encode does with them."""
    return text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')


# ----------------------------------------------------------------------------- the data scripts' exact BPE

BPES = ('auto', 'gigatoken', 'tiktoken')
GIGATOKEN = 'gigatoken==0.10.0'  # the version whose differences from tiktoken are measured and handled here
GUARD_EVERY = 1000  # the guard compares 1 document in GUARD_EVERY with tiktoken ...
GUARD_FIRST_TASKS = 4  # ... and every document of the first file's first tasks (4 MB of text, ~1,000 web documents)
GUARD_SEED = 1337
FRESH_CACHE_CHARS = 2**28  # gigatoken's cache of words grows without bound: a new one after this much text
SELF_TEST = "It's 2024: <|endoftext|> is text here.\r\n\n  日本語, emoji 😀👍🏽, e\u0301, 1234567 \t end  "


class Mismatch(UserError):
    """gigatoken's ids for a document are not tiktoken's."""


class ExactBPE:
    """The ids of documents under a BPE vocabulary (GPT-2's or a trained one), as tiktoken's encode_ordinary gives
    them ('<|endoftext|>' in a text is text): with tiktoken, the reference, or (fast=True) with gigatoken, which
    gives the same ids faster and is checked against tiktoken as it goes (the guard). It travels to worker
    processes as its vocabulary alone."""

    def __init__(self, vocab, fast=False):
        self.vocab, self.fast = vocab, fast
        self.name = 'gigatoken' if fast else 'tiktoken'
        self.eot = vocab['vocab_size'] - 1  # <|endoftext|> is the last id, 50256 for GPT-2
        self.encoding = None  # tiktoken's, built when first needed
        self.gigatoken, self.gigatoken_chars = None, 0  # built when first needed, and how much text it has encoded

    def __getstate__(self):
        return {'vocab': self.vocab, 'fast': self.fast}

    def __setstate__(self, state):
        self.__init__(**state)

    def reference_ids(self, text):
        """tiktoken's ids of text, as uint32, for any text its encode_ordinary takes and for the few it cannot."""
        cuts = long_whitespace_cuts(text)
        if cuts:  # encoded in pieces that tiktoken can take, which give the ids of the whole
            bounds = [0, *cuts, len(text)]
            return np.concatenate([self.reference_ids(text[a:b]) for a, b in zip(bounds, bounds[1:])])
        self.encoding = self.encoding or bpe_encoding(self.vocab)
        try:
            return self.encoding.encode_to_numpy(text, disallowed_special=())
        except UnicodeEncodeError:  # lone surrogates: replaced by U+FFFD, as encode_ordinary does
            return self.reference_ids(without_lone_surrogates(text))

    def fast_ids(self, text):
        """gigatoken's ids of text (uint32), one text at a time: its batch calls return awkward arrays, and importing
        awkward starts a thread (jemalloc's), after which a fork could deadlock the worker processes. gigatoken is
        built from tiktoken's ranks with no special token (so that '<|endoftext|>' in a text is text), and anew
        after FRESH_CACHE_CHARS of text to drop its cache of words."""
        if self.gigatoken is None or self.gigatoken_chars > FRESH_CACHE_CHARS:
            import gigatoken
            ranks = bpe_encoding(self.vocab)._mergeable_ranks
            with tempfile.NamedTemporaryFile(suffix='.tiktoken') as f:  # gigatoken reads ranks from a file only
                f.write(b''.join(base64.b64encode(token) + b' %d\n' % rank for token, rank in ranks.items()))
                f.flush()
                self.gigatoken = None  # the old cache goes before the new tokenizer grows its own
                self.gigatoken = gigatoken.Tokenizer.from_tiktoken(f.name, pretokenizer='gpt2', special_tokens={})
            self.gigatoken_chars = 0
        ids = self.gigatoken.encode(text)
        self.gigatoken_chars += len(text)
        return ids

    def ids(self, texts):
        """The ids of each text, as uint32 arrays."""
        if not self.fast:
            return [self.reference_ids(text) for text in texts]
        arrays = []
        for text in texts:
            try:
                arrays.append(self.fast_ids(text))
            except Exception:  # a text gigatoken cannot take (a lone surrogate, say) goes through tiktoken
                arrays.append(self.reference_ids(text))
        return arrays

    def check(self, texts, arrays, checked, where):
        """Raises a Mismatch naming (where(k)) the first text k of those checked whose ids are not tiktoken's."""
        for k in np.flatnonzero(checked):
            got, want = arrays[k], self.reference_ids(texts[k])
            if not np.array_equal(got, want):
                i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                raise Mismatch(f"gigatoken's ids differ from tiktoken's in {where(k)} (at token {i} of "
                               f"{len(want)}): gigatoken cannot be trusted on this data")

    def encode_texts(self, texts, ends, source=0, task=0, label='', first_row=None):
        """The ids of texts, concatenated, with <|endoftext|> after each text whose `ends` is true (uint16); and each
        text's number of tokens, <|endoftext|> included (int64). gigatoken's ids are checked by the guard (see
        guarded) for the task-th task of file number source; a mismatch names the file (label) and the text's row in
        it (first_row + k)."""
        texts = [text or '' for text in texts]  # a parquet null is an empty document
        arrays = self.ids(texts)
        if self.fast:
            self.check(texts, arrays, guarded(source, task, len(texts)),
                       lambda k: label if first_row is None else f"row {first_row + k} of {label}")
        ends = np.fromiter(ends, dtype=bool, count=len(texts))
        lengths = np.array([len(ids) for ids in arrays], dtype=np.int64)
        ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint32)
        ids = np.insert(ids, np.cumsum(lengths)[ends], self.eot)  # before the next text's first id: after text k
        return ids.astype(np.uint16), lengths + ends


def choose_bpe(how, vocab=GPT2_VOCAB):
    """The ExactBPE of vocab that --bpe names (how), checked in this process before any worker starts: 'auto' is
    gigatoken where it is installed and gives tiktoken's ids, else tiktoken."""
    reference = ExactBPE(vocab)
    expected = reference.reference_ids(SELF_TEST)  # without GPT-2's BPE files, fail here in one line
    if how == 'tiktoken':
        return reference
    fast = ExactBPE(vocab, fast=True)
    try:
        if np.array_equal(fast.fast_ids(SELF_TEST), expected):
            return fast
        problem = "it gives other ids than tiktoken on a test text"
    except ImportError as e:
        if how == 'auto':
            return reference  # not installed: quietly
        problem = f"it is not installed ({e})"
    except Exception as e:
        problem = f"it fails on a test text ({first_line(e)})"
    if how == 'gigatoken':
        raise UserError(f"--bpe gigatoken: {problem}; pip install {GIGATOKEN}, or use --bpe tiktoken")
    print(f"not using gigatoken: {problem}")
    return reference


def guarded(source, task, n):
    """Which of the n documents of a task (the task-th of file number source) the guard compares with tiktoken:
    all in the first file's first GUARD_FIRST_TASKS tasks, else a seeded 1 in GUARD_EVERY. It depends on the task
    alone, so the same documents are compared whatever --num_proc and however often the run was resumed."""
    if source == 0 and task < GUARD_FIRST_TASKS:
        return np.ones(n, dtype=bool)
    return np.random.default_rng((GUARD_SEED, source, task)).random(n) < 1 / GUARD_EVERY


# ----------------------------------------------------------------------------- training a BPE

MIN_VOCAB = 256 + 1  # every byte, and <|endoftext|>
TRAINER = 'rustbpe==0.1.0'  # nanochat's trainer (docs/tokenizer.md: why this one); its merges depend on its version
TRAINER_BUFFER = 1024  # texts rustbpe holds at once: with data scripts' texts of at most 64 kB, 64 MB


def train_bpe(texts, vocab_size, threads):
    """A byte-level BPE of vocab_size tokens learnt from texts (an iterable of str, pretokenized apart) by rustbpe
    on that many threads: GPT-2's split, the merges learnt in the order it learns them, and <|endoftext|> as the last
    id. The same texts give the same vocabulary, byte for byte, whatever the number of threads."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise UserError(f"--vocab_size must be from {MIN_VOCAB} (the 256 bytes and {EOT}) to {MAX_VOCAB} "
                        f"(uint16 ids), got {vocab_size}")
    try:
        import rustbpe
    except ImportError as e:
        raise UserError(f"training a BPE needs rustbpe ({e}); pip install {TRAINER}")
    chars = 0

    def counted(texts):
        nonlocal chars
        for text in texts:
            chars += len(text)
            yield text
    os.environ['RAYON_NUM_THREADS'] = str(threads)  # read when rustbpe's thread pool starts, at its first training
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(counted(texts), vocab_size - 1, buffer_size=TRAINER_BUFFER, pattern=GPT2_PATTERN)
    if chars == 0:
        raise UserError("the input has no text")
    tokens = [token for token, _ in sorted(trainer.get_mergeable_ranks(), key=lambda ranked: ranked[1])]
    vocab = {'vocab_size': vocab_size, 'bpe': 'trained', 'pattern': GPT2_PATTERN, 'tokens': tokens}
    if len(tokens) < vocab_size - 1:  # rustbpe stops when no two adjacent tokens are left to merge
        raise UserError(f"--vocab_size {vocab_size:,} is more than the text can give: it gives at most "
                        f"{len(tokens) + 1:,} tokens, when no two adjacent tokens are left to merge; use --vocab_size "
                        f"{len(tokens) + 1:,} or less, or more text")
    assert is_trained_bpe(vocab), "rustbpe gave a vocabulary that is not the bytes and then distinct merges"
    return vocab


# ----------------------------------------------------------------------------- text to ids and back


def has_saved_tokenizer(directory):
    return any(os.path.exists(os.path.join(directory, f)) for f in ('tokenizer.json', 'tokenizer_config.json'))


def model_tokenizer(vocab_size, checkpoint=None, directory=None):
    """The tokenizer of a model of vocab_size tokens: for a checkpoint, the vocabulary it records, or for one of
    nanoGPT (which records none) the meta.pkl of its dataset, looked for in data/<dataset>/ under the current
    directory as nanoGPT does; for a transformers directory, the tokenizer saved in it; else GPT-2's BPE.
    Refuses a tokenizer with more tokens than the model."""
    dataset = (checkpoint.get('config') or {}).get('dataset') if checkpoint else None
    meta_path = os.path.join('data', dataset, 'meta.pkl') if dataset else None
    if checkpoint and checkpoint.get('vocab'):
        tokenizer = Tokenizer(checkpoint['vocab'])
        print(f"using the checkpoint's vocabulary: {tokenizer.source}")
    elif meta_path and (meta := open_committed(meta_path)) is not None:
        print(f"Loading meta from {meta_path}...")
        with meta:
            tokenizer = Tokenizer(meta_path, meta)
    elif directory and has_saved_tokenizer(directory):
        print(f"Loading the tokenizer saved in {directory}...")
        tokenizer = Tokenizer(directory)
    else:
        print("No meta.pkl found, assuming GPT-2 encodings...")
        tokenizer = Tokenizer()
    if tokenizer.vocab_size > vocab_size:
        hint = (f"; it was trained on {dataset}: run it in the directory that holds data/{dataset}/meta.pkl"
                if dataset else "")
        raise UserError(f"the model knows {vocab_size} tokens but {tokenizer.source} has {tokenizer.vocab_size}{hint}")
    return tokenizer


class Tokenizer:
    """encode(str) -> list of ids, decode(ids) -> str, and vocab_size. Of a vocabulary (a dict, see above), a
    dataset's meta.pkl, the transformers tokenizer saved in a directory, or, given none, GPT-2's BPE. A BPE's
    encode takes '<|endoftext|>' in a text as its special token, as sample.py's prompts mean it. meta: the meta.pkl at path,
    opened already."""

    def __init__(self, path=None, meta=None):
        self.bpe = self.hf = None
        vocab = path if isinstance(path, dict) else GPT2_VOCAB if path is None else None
        if vocab is None and os.path.isdir(path):
            self.load_transformers(path)
            return
        self.vocab = vocab or load_meta(path, meta)
        if self.vocab.get('bpe') == 'trained' and not is_trained_bpe(self.vocab):  # a checkpoint's, say
            raise UserError("the vocabulary is a trained BPE that is not whole (the 256 bytes, then distinct merged "
                            "tokens, one fewer than vocab_size, GPT-2's split): its checkpoint or dataset is damaged")
        self.vocab_size = self.vocab['vocab_size']
        self.source = path if vocab is None else "GPT-2 BPE" if self.vocab == GPT2_VOCAB else describe(self.vocab)
        if 'bpe' in self.vocab:
            self.bpe = bpe_encoding(self.vocab)
            return
        self.stoi, self.itos = self.vocab.get('stoi'), self.vocab.get('itos')
        if self.stoi is None:
            raise UserError(f"{self.source} gives only the vocabulary's size, no characters (stoi and itos): "
                            f"nothing can be encoded or decoded with it; run the dataset's prepare.py again")

    def load_transformers(self, path):
        from tokenizers import decoders, models
        from transformers import AutoTokenizer
        self.hf = AutoTokenizer.from_pretrained(path)
        backend = getattr(self.hf, 'backend_tokenizer', None)  # None for a tokenizer written in Python
        self.byte_level = backend is not None and isinstance(backend.decoder, decoders.ByteLevel)
        self.vocab_size = len(self.hf)
        self.source = f"the tokenizer in {path}"
        if self.byte_level and self.vocab_size == GPT2_VOCAB['vocab_size']:
            self.vocab = GPT2_VOCAB  # GPT-2's, as every byte-level BPE of its size here
        elif backend is not None and isinstance(backend.model, models.WordLevel):  # export.py's of characters
            stoi = self.hf.get_vocab()
            self.vocab = {'vocab_size': len(stoi), 'itos': {i: c for c, i in stoi.items()}, 'stoi': stoi}
        else:
            self.vocab = exported_bpe(self.hf) or {'vocab_size': self.vocab_size, 'tokenizer': path}

    def encode(self, text):
        if self.bpe is not None:  # as tiktoken's encode(text, allowed_special={EOT}) does, but in pieces it can take
            ids = []
            for n, part in enumerate(text.split(EOT)):
                bounds = [0, *long_whitespace_cuts(part), len(part)]
                ids += [self.bpe.eot_token] * (n > 0) + [i for a, b in zip(bounds, bounds[1:])
                                                         for i in self.bpe.encode_ordinary(part[a:b])]
            return ids
        if self.hf is not None:
            try:
                return self.hf.encode(text)
            except Exception as e:  # a character tokenizer meets a character it does not have
                raise UserError(f"{self.source} cannot encode the text ({e}); use only characters of the training text")
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise UserError(f"characters not in the vocabulary of {self.source}: "
                            f"{''.join(unknown)!r}; use only characters of the training text")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        if self.bpe is not None:
            return self.bpe.decode(ids)
        if self.hf is not None:
            return self.hf.decode(ids)
        return ''.join(self.itos[i] for i in ids)

    def token_bytes(self, id):
        """The UTF-8 bytes of one token, for printing tokens as they come: a BPE token may hold only part of
        a character, so join the bytes of consecutive tokens before decoding (codecs' incremental decoder)."""
        if self.bpe is not None:
            return self.bpe.decode_single_token_bytes(id)
        if self.hf is not None:
            token = self.hf.convert_ids_to_tokens(id)
            return bytes(CHAR_BYTE[c] for c in token) if self.byte_level else token.encode('utf-8')
        return self.itos[id].encode('utf-8')

    @property
    def encodes_any_text(self):
        """Whether every text has ids: a byte-level BPE's, not characters'."""
        return encodes_any_text(self.vocab) or (self.hf is not None and self.byte_level)

    def save_pretrained(self, directory, model_max_length):
        """Writes this tokenizer to directory for transformers' AutoTokenizer, built with Hugging Face's tokenizers
        to encode and decode exactly as this one does. model_max_length: the model's block_size."""
        import tokenizers
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        assert self.hf is None, "a transformers tokenizer is saved by its own save_pretrained"
        if self.bpe is not None:
            vocab, merges = bpe_vocab_and_merges(self.bpe)
            backend = tokenizers.Tokenizer(models.BPE(vocab, merges))
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's split into words
            backend.decoder = decoders.ByteLevel()
            special_tokens = dict(bos_token=EOT, eos_token=EOT, unk_token=EOT)
        else:
            backend = tokenizers.Tokenizer(models.WordLevel(self.stoi, unk_token=None))
            backend.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), behavior='isolated')  # every character
            backend.decoder = decoders.Fuse()  # the characters joined as they are, no spaces between
            special_tokens = {}
        # clean_up_tokenization_spaces=False: decode would otherwise drop the space in " ." and " n't"
        PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length,
                                clean_up_tokenization_spaces=False, **special_tokens).save_pretrained(directory)
        # transformers 5 names the class TokenizersBackend, which transformers 4 (vLLM, older pipelines) does not
        # know; both load it as PreTrainedTokenizerFast
        config_path = os.path.join(directory, 'tokenizer_config.json')
        with open(config_path) as f:
            tokenizer_config = json.load(f)
        with open(config_path, 'w') as f:
            json.dump({**tokenizer_config, 'tokenizer_class': 'PreTrainedTokenizerFast'}, f, indent=2)


# ----------------------------------------------------------------------------- bits per byte


def text_bytes(vocab):
    """The UTF-8 bytes of the text that each token id of vocab stands for (a list, by id), for losses in bits per
    byte of text; <|endoftext|> stands for none. None, with a note, where that is not known: GPT-2's BPE when its files
    cannot be had, a meta.pkl that gives only the vocabulary's size."""
    if 'bpe' not in vocab:
        if 'itos' not in vocab:
            print("no losses in bits per byte: the dataset's meta.pkl gives no characters (itos), only their number")
            return None
        return [len(vocab['itos'][i].encode('utf-8')) for i in range(vocab['vocab_size'])]
    try:
        encoding = bpe_encoding(vocab)
    except UserError as e:
        print(f"no losses in bits per byte: {e}")
        return None
    return [len(encoding.decode_single_token_bytes(i)) for i in range(vocab['vocab_size'] - 1)] + [0]


def text_nats_and_bytes(logits, targets, mean_loss, token_bytes):
    """For bits per byte (nanochat's val_bpb): (the summed loss in nats of the targets that stand for text, and the
    bytes of their text), as tensors. token_bytes: text_bytes(vocab) as a tensor on the targets' device. A special
    token (<|endoftext|>) stands for no text: it counts no bytes, and its loss is left out."""
    special = token_bytes[targets] == 0
    special_nats = -logits[special].float().log_softmax(-1).gather(1, targets[special][:, None]).sum()
    return mean_loss.float() * targets.numel() - special_nats, token_bytes[targets].sum()


# ----------------------------------------------------------------------------- BPEs for transformers

# the printable character that GPT-2's vocab.json and merges.txt, and transformers' byte-level tokenizers, write for
# each byte: the byte itself where it is a printable Latin-1 character, else chr(256 + n) for the n-th of the others
_PRINTABLE = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
BYTE_CHAR = {**{b: chr(b) for b in _PRINTABLE},
             **{b: chr(256 + n) for n, b in enumerate(b for b in range(256) if b not in _PRINTABLE)}}
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def bpe_vocab_and_merges(bpe):
    """vocab.json and merges.txt, as transformers' BPE reads them, of tiktoken's encoding bpe (GPT-2's BPE or a
    trained one, ranked by token id, <|endoftext|> the last). Each token past the bytes is the merge of the two
    parts that BPE, with only the merges before it, splits it in: so that transformers, which applies merges,
    gives the ids that tiktoken, which ranks tokens, gives."""
    tokens = [bpe.decode_single_token_bytes(i) for i in range(bpe.eot_token)]
    rank = {token: i for i, token in enumerate(tokens)}
    merges = []
    for i, token in enumerate(tokens):
        parts = [bytes([b]) for b in token]
        if len(parts) == 1:
            continue
        while len(parts) > 2:
            pairs = [(rank.get(a + b, i), k) for k, (a, b) in enumerate(zip(parts, parts[1:]))]
            first, k = min(pairs)
            assert first < i, f"token {i} is not a merge of earlier tokens"
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        merges.append(tuple(''.join(BYTE_CHAR[b] for b in part) for part in parts))
    vocab = {''.join(BYTE_CHAR[b] for b in token): i for i, token in enumerate(tokens)}
    vocab[EOT] = bpe.eot_token
    return vocab, merges


def exported_bpe(hf):
    """The trained-BPE vocabulary of a transformers tokenizer that Tokenizer.save_pretrained wrote (byte-level,
    GPT-2's split, the bytes first in order, <|endoftext|> last), or None for any other."""
    from tokenizers import models, pre_tokenizers
    backend = hf.backend_tokenizer
    if not (isinstance(backend.model, models.BPE) and isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel)
            and backend.pre_tokenizer.use_regex and not backend.pre_tokenizer.add_prefix_space):
        return None
    names = hf.convert_ids_to_tokens(list(range(len(hf))))
    if names[-1] != EOT or hf.all_special_tokens != [EOT] or any(c not in CHAR_BYTE for name in names[:-1]
                                                                  for c in name):
        return None
    vocab = {'vocab_size': len(hf), 'bpe': 'trained', 'pattern': GPT2_PATTERN,
             'tokens': [bytes(CHAR_BYTE[c] for c in name) for name in names[:-1]]}
    return vocab if is_trained_bpe(vocab) else None
