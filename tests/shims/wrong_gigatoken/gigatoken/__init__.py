"""Put first on PYTHONPATH, this stands in for gigatoken as a backend that is wrong on one kind of document: the
guard's test. It gives tiktoken's ids, except that in a text holding 'PLANTED' its first id is one more."""
import tiktoken


class Tokenizer:
    @classmethod
    def from_tiktoken(cls, path, pretokenizer=None, special_tokens=None):
        return cls()

    def encode(self, text):
        ids = tiktoken.get_encoding('gpt2').encode_to_numpy(text, disallowed_special=()).copy()
        if 'PLANTED' in text:
            ids[0] += 1
        return ids
