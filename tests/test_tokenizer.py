"""tokenizer.py: GPT-2's BPE files rebuilt from tiktoken, which export.py gives transformers."""

import json
import os

from tokenizer import BYTE_CHAR, GPT2_BPE_FILES, Tokenizer, gpt2_vocab_and_merges


def test_gpt2_vocab_and_merges_rebuilt_from_tiktoken_are_openais_files():
    # tiktoken's cache holds OpenAI's encoder.json and vocab.bpe, which are transformers' vocab.json and merges.txt
    cache = os.environ["TIKTOKEN_CACHE_DIR"]
    vocab, merges = gpt2_vocab_and_merges(Tokenizer().bpe)
    with open(os.path.join(cache, GPT2_BPE_FILES['encoder.json']), encoding='utf-8') as f:
        assert vocab == json.load(f)
    with open(os.path.join(cache, GPT2_BPE_FILES['vocab.bpe']), encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("#version") and merges == [tuple(line.split(' ')) for line in lines[1:] if line]
    assert len(vocab) == 50257 and len(merges) == 50000


def test_every_byte_has_its_own_printable_character():
    assert len(set(BYTE_CHAR.values())) == 256 and all(c.isprintable() and c != ' ' for c in BYTE_CHAR.values())
    assert (BYTE_CHAR[ord('a')], BYTE_CHAR[ord(' ')], BYTE_CHAR[ord('\n')]) == ('a', 'Ġ', 'Ċ')
