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


# ---------------------------------------------------------------------------- corpus.py's two GPT-2 BPEs

import sysconfig  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tiktoken  # noqa: E402

import corpus  # noqa: E402

EDGE_CASES = {
    "literal end of text": "before <|endoftext|> after, and <|endoftext|><|endoftext|>",
    "lone surrogate": "a\ud800b and a pair written apart \ud83d\ude00",
    "empty": "",
    "100k spaces": " " * 100_000,
    "100k spaces then a word": " " * 100_000 + "word",
    "long runs": "7" * 50_000 + " " + "a" * 50_000 + " " + "!" * 20_000,
    "CJK, emoji, combining marks": "日本語のテキスト 한국어 😀👍🏽👨‍👩‍👧 e\u0301 n\u0303 \u200d\u3000\u00a0",
    "Windows newlines": "line one\r\nline two\r\n\r\n\r\nend\r\n",
    "contractions and numbers": "It's they'll we'd I'M 3.14159 1,000,000 $5 #hashtag @user",
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_gigatoken_with_its_tiktoken_fallback_gives_tiktokens_ids_on_edge_cases(name):
    pytest.importorskip("gigatoken")
    text = EDGE_CASES[name]
    [ids] = corpus.bpe_ids([text], "gigatoken")
    assert ids.tolist() == tiktoken.get_encoding("gpt2").encode_ordinary(text)


def test_gigatoken_cannot_take_a_lone_surrogate_which_goes_through_tiktoken():
    pytest.importorskip("gigatoken")
    with pytest.raises(TypeError):
        corpus.gigatoken_ids("a\ud800b")
    assert corpus.bpe_ids(["a\ud800b"], "gigatoken")[0].tolist() == [64, 4210, 65]  # '\ufffd' as encode_ordinary


def test_a_million_spaces_before_a_word_which_tiktoken_cannot_encode_are_cut_where_pretokens_stay_whole():
    # tiktoken's regex exceeds its backtracking limit (a ValueError) on this; the pretokens are a million spaces less
    # one, then ' word', so encoding the two pieces alone gives the ids of the whole
    text = "Some text." + " " * 1_000_000 + "word."
    enc = tiktoken.get_encoding("gpt2")
    expected = enc.encode_ordinary("Some text." + " " * 999_999) + enc.encode_ordinary(" word.")
    assert corpus.tiktoken_ids(text).tolist() == expected
    if corpus.choose_bpe("auto") == "gigatoken":
        assert corpus.gigatoken_ids(text).tolist() == expected


def real_text(megabytes):
    """The installed packages' own sources and documentation, megabytes of it, in a fixed order."""
    texts, size = [], 0
    for folder, _, names in sorted(os.walk(sysconfig.get_paths()["purelib"])):
        for name in sorted(names):
            if name.endswith((".py", ".md", ".rst", ".txt")) and size < megabytes * 2**20:
                with open(os.path.join(folder, name), "rb") as f:
                    text = f.read().decode("utf-8", errors="replace")
                texts.append(text)
                size += len(text.encode("utf-8"))
    return texts


def test_gigatoken_gives_tiktokens_ids_on_megabytes_of_real_text():
    pytest.importorskip("gigatoken")
    texts = real_text(4)
    assert len(texts) > 100
    fast, reference = corpus.bpe_ids(texts, "gigatoken"), corpus.bpe_ids(texts, "tiktoken")
    assert all(np.array_equal(a, b) for a, b in zip(fast, reference))
    assert sum(map(len, reference)) > 10**6


def test_the_guard_names_the_document_whose_ids_differ():
    texts = ["First document.", "Second document.", "Third."]
    arrays = corpus.bpe_ids(texts, "tiktoken")
    arrays[1] = arrays[1].copy()
    arrays[1][2] += 1  # one token changed
    with pytest.raises(corpus.Mismatch, match=r"in row 11 of a.parquet \(at token 2 of 3\)"):
        corpus.check_against_tiktoken(texts, arrays, [True] * 3, lambda k: f"row {10 + k} of a.parquet")
    corpus.check_against_tiktoken(texts, arrays, [True, False, True], lambda k: "unchecked")  # not compared


def test_the_guard_checks_the_first_files_first_tasks_whole_and_a_seeded_thousandth_of_the_rest():
    assert corpus.guarded(0, corpus.GUARD_FIRST_TASKS - 1, 500).all()
    sampled = np.concatenate([corpus.guarded(source, task, 1000) for source in (0, 1) for task in range(100, 300)])
    assert 300 < sampled.sum() < 500  # 1 in 1000 of 400,000 documents
    assert np.array_equal(corpus.guarded(1, 7, 1000), corpus.guarded(1, 7, 1000))  # the same in every run


@pytest.mark.parametrize("name", EDGE_CASES)
def test_tokenizer_encodes_as_tiktoken_with_its_end_of_text_token(name):
    # sample.py's prompts and HellaSwag go through Tokenizer.encode, where '<|endoftext|>' is GPT-2's special token
    text = EDGE_CASES[name]
    assert Tokenizer().encode(text) == tiktoken.get_encoding("gpt2").encode(text, allowed_special={"<|endoftext|>"})


def test_tokenizer_encodes_a_million_spaces_before_a_word_or_the_end_of_text_token():
    # a prompt file tiktoken alone fails on; before '<|endoftext|>' the spaces are one pretoken, never cut
    enc = tiktoken.get_encoding("gpt2")
    spaces = " " * 1_000_000
    with pytest.raises(ValueError, match="backtracking"):
        enc.encode(spaces + "word.")
    assert Tokenizer().encode(spaces + "word.") == enc.encode_ordinary(spaces[1:]) + enc.encode_ordinary(" word.")
    assert Tokenizer().encode("a" + spaces + "<|endoftext|>" + spaces + "b") == (
        enc.encode_ordinary("a" + spaces) + [enc.eot_token] + enc.encode_ordinary(spaces[1:]) + enc.encode_ordinary(" b"))
