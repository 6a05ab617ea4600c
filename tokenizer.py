"""Text to token ids and back: a dataset's character vocabulary (its meta.pkl), GPT-2's BPE, or a tokenizer saved
by transformers (export.py saves each model's); and each of the first two saved for transformers.

A vocabulary, as a dataset has it and a checkpoint records it (plain data, so that torch.load's weights_only reads
it): {'vocab_size': 65, 'itos': {0: '\\n', ...}, 'stoi': {'\\n': 0, ...}} for characters (meta.pkl's keys), or
GPT2_VOCAB for GPT-2's BPE, the vocabulary of every dataset without a meta.pkl.
"""

import json
import os
import pickle
import re

from errors import UserError, first_line


class PlainDataUnpickler(pickle.Unpickler):
    """meta.pkl may come from anywhere, and unpickling can run code: accept plain data alone
    (dicts, lists, strings, numbers), which needs no class."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it holds a {module}.{name}, which is not plain data")


def load_meta(path):
    """A dataset's meta.pkl: {'vocab_size': int, 'itos': {int: str}, 'stoi': {str: int}} for characters; itos and
    stoi may be missing (a dataset that only says its size), but when present they must be whole and agree."""
    try:
        with open(path, 'rb') as f:
            meta = PlainDataUnpickler(f).load()
    except Exception as e:  # whatever a truncated or crafted pickle raises
        raise UserError(f"cannot read {path} ({first_line(e)}); run the dataset's prepare.py again")
    size = meta.get('vocab_size') if isinstance(meta, dict) else None
    if type(size) is not int or not 1 <= size <= 2**16:
        raise UserError(f"{path} has no vocab_size from 1 to 65536 (uint16 ids); run the dataset's prepare.py again")
    itos, stoi = meta.get('itos'), meta.get('stoi')
    if (itos, stoi) != (None, None) and not (
            isinstance(itos, dict) and isinstance(stoi, dict) and len(itos) == len(stoi) == size
            and all(type(i) is int and isinstance(c, str) and stoi.get(c) == i for i, c in itos.items())
            and set(itos) == set(range(size))):
        raise UserError(f"{path} has an itos and stoi that do not map the ids 0..{size - 1} to characters and back; "
                        f"run the dataset's prepare.py again")
    return meta


GPT2_VOCAB = {'vocab_size': 50257, 'bpe': 'gpt2'}


def dataset_vocab(data_dir):
    """The vocabulary of the dataset in data_dir: its meta.pkl's, or GPT-2's BPE where it has none, as in nanoGPT."""
    meta_path = os.path.join(data_dir, 'meta.pkl')
    if not os.path.exists(meta_path):
        return GPT2_VOCAB
    return {k: v for k, v in load_meta(meta_path).items() if k in ('vocab_size', 'itos', 'stoi')}


def check_vocab(learnt, vocab, dataset, source):
    """Raises a UserError when the model from source learnt another vocabulary than dataset's (vocab): its token ids
    would mean other text. learnt None: the model does not say."""
    if learnt is not None and learnt != vocab:
        raise UserError(f"dataset={dataset} has another vocabulary ({describe(vocab)}) than the model from {source} "
                        f"learnt ({describe(learnt)}): its token ids would mean other text; use a dataset of the "
                        f"model's vocabulary, or start a new run")


def describe(vocab):
    """A vocabulary in a few words, for messages."""
    if vocab.get('bpe') == 'gpt2':
        return "GPT-2's BPE"
    if 'tokenizer' in vocab:
        return f"the {vocab['vocab_size']} tokens of the tokenizer in {vocab['tokenizer']}"
    return f"{vocab['vocab_size']} characters"


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


LONG_RUN = 2**17  # a whitespace run of ~1M characters before a non-space exceeds tiktoken's regex backtracking limit
# tiktoken's \s: Unicode's White_Space, which is Python's isspace() less the separators \x1c-\x1f
WHITESPACE = '\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
LONG_WHITESPACE = re.compile(f'(?<![{WHITESPACE}])[{WHITESPACE}]{{{LONG_RUN},}}(?=[^{WHITESPACE}])')


def long_whitespace_cuts(text):
    """Where to cut text so that tiktoken can encode each piece alone and give the ids of the whole. Its regex fails
    (ValueError: backtracking's stack) on a whitespace run of a million characters before a non-space; such a run
    is one pretoken less its last character, which begins the next pretoken: a cut before that character leaves
    every pretoken whole."""
    # a run of LONG_RUN holds two characters step apart with nothing but whitespace between: look closer only there
    step = LONG_RUN // 2
    if not any(text[p] in WHITESPACE and text[p + step] in WHITESPACE and not text[p:p + step].strip(WHITESPACE)
               for p in range(0, len(text) - step, step)):
        return []
    return [m.end() - 1 for m in LONG_WHITESPACE.finditer(text)]


EOT = '<|endoftext|>'  # GPT-2's one special token, which ends each document

# the printable character that GPT-2's vocab.json and merges.txt, and transformers' byte-level tokenizers, write for
# each byte: the byte itself where it is a printable Latin-1 character, else chr(256 + n) for the n-th of the others
_PRINTABLE = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
BYTE_CHAR = {**{b: chr(b) for b in _PRINTABLE},
             **{b: chr(256 + n) for n, b in enumerate(b for b in range(256) if b not in _PRINTABLE)}}
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def gpt2_vocab_and_merges(bpe):
    """GPT-2's vocab.json and merges.txt, rebuilt from tiktoken's encoding bpe (the same BPE, ranked by token id).
    Each token from id 256 on is the merge of the two parts that BPE, with only the merges before it, splits it in."""
    tokens = [bpe.decode_single_token_bytes(i) for i in range(bpe.eot_token)]  # <|endoftext|> is the last id
    rank = {token: i for i, token in enumerate(tokens)}
    merges = []
    for i, token in enumerate(tokens[256:], start=256):
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            pairs = [(rank.get(a + b, i), k) for k, (a, b) in enumerate(zip(parts, parts[1:]))]
            first, k = min(pairs)
            assert first < i, f"GPT-2 token {i} is not a merge of earlier tokens"
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        merges.append(tuple(''.join(BYTE_CHAR[b] for b in part) for part in parts))
    vocab = {''.join(BYTE_CHAR[b] for b in token): i for i, token in enumerate(tokens)}
    vocab[EOT] = bpe.eot_token
    return vocab, merges


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
    elif meta_path and os.path.exists(meta_path):
        print(f"Loading meta from {meta_path}...")
        tokenizer = Tokenizer(meta_path)
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
    """encode(str) -> list of ids, decode(ids) -> str, and vocab_size. Of a vocabulary (a dict, see above), the
    character vocabulary of a meta.pkl (as made by data/shakespeare_char/prepare.py), the transformers tokenizer
    saved in a directory, or, given none, GPT-2's BPE through tiktoken."""

    def __init__(self, path=None):
        self.bpe = self.hf = None
        vocab = path if isinstance(path, dict) else None
        if path is None or (vocab and vocab.get('bpe') == 'gpt2'):
            self.bpe = gpt2_encoding()
            self.vocab_size = self.bpe.n_vocab
            self.source = "GPT-2 BPE"
            self.vocab = GPT2_VOCAB
        elif vocab:
            self.stoi, self.itos = vocab.get('stoi'), vocab.get('itos')
            self.vocab_size = vocab['vocab_size']
            self.source = f"{self.vocab_size} characters"
            self.vocab = vocab
        elif os.path.isdir(path):
            from tokenizers import decoders, models
            from transformers import AutoTokenizer
            self.hf = AutoTokenizer.from_pretrained(path)
            backend = getattr(self.hf, 'backend_tokenizer', None)  # None for a tokenizer written in Python
            self.byte_level = backend is not None and isinstance(backend.decoder, decoders.ByteLevel)
            self.vocab_size = len(self.hf)
            self.source = f"the tokenizer in {path}"
            if self.byte_level and self.vocab_size == GPT2_VOCAB['vocab_size']:
                self.vocab = GPT2_VOCAB # GPT-2's, as every byte-level BPE of its size here
            elif backend is not None and isinstance(backend.model, models.WordLevel): # export.py's of characters
                stoi = self.hf.get_vocab()
                self.vocab = {'vocab_size': len(stoi), 'itos': {i: c for c, i in stoi.items()}, 'stoi': stoi}
            else:
                self.vocab = {'vocab_size': self.vocab_size, 'tokenizer': path}
        else:
            meta = load_meta(path)
            self.stoi, self.itos = meta.get('stoi'), meta.get('itos')
            self.vocab_size = meta['vocab_size']
            self.source = path
            self.vocab = {k: v for k, v in meta.items() if k in ('vocab_size', 'itos', 'stoi')}
        if self.bpe is None and self.hf is None and self.stoi is None:
            raise UserError(f"{self.source} gives only the vocabulary's size, no characters (stoi and itos): "
                            f"nothing can be encoded or decoded with it; run the dataset's prepare.py again")

    def encode(self, text):
        if self.bpe is not None: # as tiktoken's encode(text, allowed_special={EOT}) does, but in pieces it can take
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

    def save_pretrained(self, directory, model_max_length):
        """Writes this tokenizer to directory for transformers' AutoTokenizer, built with Hugging Face's tokenizers
        to encode and decode exactly as this one does. model_max_length: the model's block_size."""
        import tokenizers
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        assert self.hf is None, "a transformers tokenizer is saved by its own save_pretrained"
        if self.bpe is not None:
            vocab, merges = gpt2_vocab_and_merges(self.bpe)
            backend = tokenizers.Tokenizer(models.BPE(vocab, merges))
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False) # GPT-2's split into words
            backend.decoder = decoders.ByteLevel()
            special_tokens = dict(bos_token=EOT, eos_token=EOT, unk_token=EOT)
        else:
            backend = tokenizers.Tokenizer(models.WordLevel(self.stoi, unk_token=None))
            backend.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), behavior='isolated') # every character
            backend.decoder = decoders.Fuse() # the characters joined as they are, no spaces between
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
