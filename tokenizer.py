"""Text to token ids and back: a dataset's character vocabulary (its meta.pkl) or GPT-2's BPE."""

import pickle

from configurator import UserError


class PlainDataUnpickler(pickle.Unpickler):
    """meta.pkl may come from anywhere, and unpickling can run code: accept plain data alone
    (dicts, lists, strings, numbers), which needs no class."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it holds a {module}.{name}, which is not plain data")


def load_meta(path):
    """A dataset's meta.pkl: {'vocab_size': int, 'itos': {int: str}, 'stoi': {str: int}} for characters."""
    try:
        with open(path, 'rb') as f:
            meta = PlainDataUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}; run the dataset's prepare.py again")
    if not isinstance(meta, dict) or not isinstance(meta.get('vocab_size'), int):
        raise UserError(f"{path} has no vocab_size; run the dataset's prepare.py again")
    return meta


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


class Tokenizer:
    """encode(str) -> list of ids, decode(ids) -> str, and vocab_size. The character vocabulary of a meta.pkl
    (as made by data/shakespeare_char/prepare.py) when given one, else GPT-2's BPE through tiktoken."""

    def __init__(self, meta_path=None):
        if meta_path is not None:
            meta = load_meta(meta_path)
            self.stoi, self.itos = meta['stoi'], meta['itos']
            self.vocab_size = meta['vocab_size']
            self.source = meta_path
        else:
            self.bpe = gpt2_encoding()
            self.vocab_size = self.bpe.n_vocab
            self.source = "GPT-2 BPE"

    def encode(self, text):
        if hasattr(self, 'bpe'):
            return self.bpe.encode(text, allowed_special={"<|endoftext|>"})
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise UserError(f"characters not in the vocabulary of {self.source}: "
                            f"{''.join(unknown)!r}; use only characters of the training text")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        if hasattr(self, 'bpe'):
            return self.bpe.decode(ids)
        return ''.join(self.itos[i] for i in ids)

    def token_bytes(self, id):
        """The UTF-8 bytes of one token, for printing tokens as they come: a BPE token may hold only part of
        a character, so join the bytes of consecutive tokens before decoding (codecs' incremental decoder)."""
        if hasattr(self, 'bpe'):
            return self.bpe.decode_single_token_bytes(id)
        return self.itos[id].encode('utf-8')
