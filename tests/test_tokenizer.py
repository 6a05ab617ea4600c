"""tokenizer.py: GPT-2's BPE files rebuilt from tiktoken, which export.py gives transformers; the data scripts'
exact BPE (tiktoken, gigatoken and the guard)."""

import json
import math
import os
import pickle

from tokenizer import BYTE_CHAR, GPT2_BPE_FILES, GPT2_VOCAB, ExactBPE, Tokenizer, bpe_vocab_and_merges


def test_gpt2_vocab_and_merges_rebuilt_from_tiktoken_are_openais_files():
    # tiktoken's cache holds OpenAI's encoder.json and vocab.bpe, which are transformers' vocab.json and merges.txt
    cache = os.environ["TIKTOKEN_CACHE_DIR"]
    vocab, merges = bpe_vocab_and_merges(Tokenizer().bpe)
    with open(os.path.join(cache, GPT2_BPE_FILES['encoder.json']), encoding='utf-8') as f:
        assert vocab == json.load(f)
    with open(os.path.join(cache, GPT2_BPE_FILES['vocab.bpe']), encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("#version") and merges == [tuple(line.split(' ')) for line in lines[1:] if line]
    assert len(vocab) == 50257 and len(merges) == 50000


def test_every_byte_has_its_own_printable_character():
    assert len(set(BYTE_CHAR.values())) == 256 and all(c.isprintable() and c != ' ' for c in BYTE_CHAR.values())
    assert (BYTE_CHAR[ord('a')], BYTE_CHAR[ord(' ')], BYTE_CHAR[ord('\n')]) == ('a', 'Ġ', 'Ċ')


# ---------------------------------------------------------------------------- the data scripts' two GPT-2 BPEs

import sysconfig  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tiktoken  # noqa: E402

import tokenizer  # noqa: E402

TIKTOKEN, GIGATOKEN = ExactBPE(GPT2_VOCAB), ExactBPE(GPT2_VOCAB, fast=True)

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
    [ids] = GIGATOKEN.ids([text])
    assert ids.tolist() == tiktoken.get_encoding("gpt2").encode_ordinary(text)


def test_gigatoken_cannot_take_a_lone_surrogate_which_goes_through_tiktoken():
    pytest.importorskip("gigatoken")
    with pytest.raises(TypeError):
        GIGATOKEN.fast_ids("a\ud800b")
    assert GIGATOKEN.ids(["a\ud800b"])[0].tolist() == [64, 4210, 65]  # '\ufffd' as encode_ordinary


def test_a_million_spaces_before_a_word_which_tiktoken_cannot_encode_are_cut_where_pretokens_stay_whole():
    # tiktoken's regex exceeds its backtracking limit (a ValueError) on this; the pretokens are a million spaces less
    # one, then ' word', so encoding the two pieces alone gives the ids of the whole
    text = "Some text." + " " * 1_000_000 + "word."
    enc = tiktoken.get_encoding("gpt2")
    expected = enc.encode_ordinary("Some text." + " " * 999_999) + enc.encode_ordinary(" word.")
    assert TIKTOKEN.reference_ids(text).tolist() == expected
    if tokenizer.choose_bpe("auto").fast:
        assert GIGATOKEN.fast_ids(text).tolist() == expected


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
    fast, reference = GIGATOKEN.ids(texts), TIKTOKEN.ids(texts)
    assert all(np.array_equal(a, b) for a, b in zip(fast, reference))
    assert sum(map(len, reference)) > 10**6


def test_the_guard_names_the_document_whose_ids_differ():
    texts = ["First document.", "Second document.", "Third."]
    arrays = TIKTOKEN.ids(texts)
    arrays[1] = arrays[1].copy()
    arrays[1][2] += 1  # one token changed
    with pytest.raises(tokenizer.Mismatch, match=r"in row 11 of a.parquet \(at token 2 of 3\)"):
        GIGATOKEN.check(texts, arrays, [True] * 3, lambda k: f"row {10 + k} of a.parquet")
    GIGATOKEN.check(texts, arrays, [True, False, True], lambda k: "unchecked")  # not compared


def test_the_guard_checks_the_first_files_first_tasks_whole_and_a_seeded_thousandth_of_the_rest():
    assert tokenizer.guarded(0, tokenizer.GUARD_FIRST_TASKS - 1, 500).all()
    sampled = np.concatenate([tokenizer.guarded(source, task, 1000) for source in (0, 1) for task in range(100, 300)])
    assert 300 < sampled.sum() < 500  # 1 in 1000 of 400,000 documents
    assert np.array_equal(tokenizer.guarded(1, 7, 1000), tokenizer.guarded(1, 7, 1000))  # the same in every run


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


# ---------------------------------------------------------------------------- a BPE trained on your own text

import random  # noqa: E402

import torch  # noqa: E402

import subprocess  # noqa: E402
import sys  # noqa: E402

from errors import UserError  # noqa: E402
from helpers import BLOCKED_NETWORK, REPO, SHAKESPEARE  # noqa: E402


def pieces(text, size=2**16):
    return (text[i:i + size] for i in range(0, len(text), size))


@pytest.fixture(scope="module")
def trained():
    """A BPE of 1,000 tokens trained on tiny Shakespeare."""
    return tokenizer.train_bpe(pieces(SHAKESPEARE.read_text(encoding="utf-8")), 1000, 2)


def test_the_split_pattern_is_gpt2s_as_tiktoken_has_it():
    assert tokenizer.GPT2_PATTERN == tiktoken.get_encoding("gpt2")._pat_str


def test_a_trained_bpe_is_the_bytes_then_its_merges_then_endoftext(trained):
    assert trained["vocab_size"] == 1000 and len(trained["tokens"]) == 999
    assert trained["tokens"][:256] == [bytes([b]) for b in range(256)]
    assert trained["tokens"][256:259] == [b" t", b"he", b" a"]  # the most frequent pairs, in the order learnt
    ours = Tokenizer(trained)
    assert ours.encode("<|endoftext|>") == [999] and ours.source.startswith("a BPE of 1000 tokens trained on its")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    ids = ours.encode(text)
    assert ours.decode(ids) == text and len(text) / len(ids) > 2.3  # GPT-2's BPE: 3.3 characters a token


@pytest.mark.parametrize("name", EDGE_CASES)
def test_gigatoken_gives_tiktokens_ids_with_a_trained_bpes_ranks(trained, name):
    pytest.importorskip("gigatoken")
    text = EDGE_CASES[name]
    fast, reference = ExactBPE(trained, fast=True), ExactBPE(trained)
    assert fast.ids([text])[0].tolist() == reference.ids([text])[0].tolist() == \
        tokenizer.bpe_encoding(trained).encode_ordinary(text)


@pytest.mark.slow
def test_gigatoken_gives_tiktokens_ids_with_a_trained_bpe_on_real_text(trained):
    pytest.importorskip("gigatoken")
    texts = real_text(1)
    fast, reference = ExactBPE(trained, fast=True).ids(texts), ExactBPE(trained).ids(texts)
    assert all(np.array_equal(a, b) for a, b in zip(fast, reference))
    assert tokenizer.choose_bpe("auto", trained).fast


def test_a_text_that_cannot_give_the_vocabulary_asked_for_is_one_line():
    # 'ab ab': the bytes, 'ab', then ' ab', and nothing left to merge
    with pytest.raises(UserError) as error:
        tokenizer.train_bpe(["ab ab"], 300, 1)
    assert str(error.value) == ("--vocab_size 300 is more than the text can give: it gives at most 259 tokens, when no "
                                "two adjacent tokens are left to merge; use --vocab_size 259 or less, or more text")
    assert tokenizer.train_bpe(["ab ab"], 259, 1)["tokens"][256:] == [b"ab", b" ab"]


def test_no_text_and_a_vocabulary_without_room_for_the_bytes_are_one_line():
    with pytest.raises(UserError, match="^the input has no text$"):
        tokenizer.train_bpe([], 300, 1)
    with pytest.raises(UserError, match=r"^--vocab_size must be from 257 \(the 256 bytes and <\|endoftext\|>\) to "
                                        r"65536 \(uint16 ids\), got 256$"):
        tokenizer.train_bpe(["ab ab"], 256, 1)


def test_a_trained_bpe_goes_through_meta_pkl_as_it_is(trained, tmp_path):
    with open(tmp_path / "meta.pkl", "wb") as f:
        tokenizer.write_meta(f, trained)
    assert tokenizer.load_meta(tmp_path / "meta.pkl") == trained
    with open(tmp_path / "meta.pkl", "rb") as meta:
        assert tokenizer.dataset_vocab(tmp_path, meta) == trained


@pytest.mark.parametrize("damage", ["a token twice", "a token missing", "another split", "a byte out of order"])
def test_a_meta_pkl_with_a_broken_trained_bpe_is_one_line(trained, tmp_path, damage):
    tokens = list(trained["tokens"])
    broken = {"a token twice": dict(trained, tokens=tokens[:-1] + [tokens[300]]),
              "a token missing": dict(trained, tokens=tokens[:-1]),
              "another split": dict(trained, pattern=r"\S+|\s+"),
              "a byte out of order": dict(trained, tokens=[tokens[1], tokens[0]] + tokens[2:])}[damage]
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps(broken))
    with pytest.raises(UserError, match=rf"^{tmp_path / 'meta.pkl'} holds a trained BPE that is not whole"):
        tokenizer.load_meta(tmp_path / "meta.pkl")


def test_two_trained_bpes_of_one_size_are_told_apart():
    learnt, other = tokenizer.train_bpe(["ab ab"], 259, 1), tokenizer.train_bpe(["cd cd"], 259, 1)
    assert learnt["tokens"][256:] == [b"ab", b" ab"] and other["tokens"][256:] == [b"cd", b" cd"]
    with pytest.raises(UserError) as error:
        tokenizer.check_vocab(learnt, other, "cd", "out/ckpt.pt")
    assert str(error.value) == (
        f"dataset=cd has another vocabulary (a BPE of 259 tokens trained on its text (fingerprint "
        f"{tokenizer.fingerprint(other)})) than the model from out/ckpt.pt learnt (a BPE of 259 tokens trained on its "
        f"text (fingerprint {tokenizer.fingerprint(learnt)})): its token ids would mean other text; use a dataset of "
        f"the model's vocabulary, or start a new run")
    assert tokenizer.fingerprint(learnt) != tokenizer.fingerprint(other)


# ---------------------------------------------------------------------------- bits per byte

def test_text_bytes_counts_each_tokens_utf8_bytes_and_none_for_endoftext(trained):
    chars = tokenizer.char_vocab(["\n", "a", "é", "😀"])
    assert tokenizer.text_bytes(chars) == [1, 1, 2, 4]
    assert tokenizer.text_bytes(trained)[:256] == [1] * 256 and tokenizer.text_bytes(trained)[-1] == 0
    gpt2 = tokenizer.text_bytes(GPT2_VOCAB)
    assert len(gpt2) == 50257 and gpt2[31373] == len(b"hello") and gpt2[50256] == 0


def test_bits_per_byte_leaves_out_the_loss_and_the_bytes_of_endoftext():
    token_bytes = torch.tensor([1, 2, 3, 0])  # id 3 is <|endoftext|>
    logits = torch.zeros(1, 4, 4)  # uniform: every target costs ln 4
    logits[0, 1, 3] = 10.0  # ... but the EOT target at position 1, which costs ~0 and must not lower the sum
    targets = torch.tensor([[0, 3, 2, 1]])
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 4), targets.view(-1))
    nats, num_bytes = tokenizer.text_nats_and_bytes(logits, targets, loss, token_bytes)
    assert num_bytes.item() == 1 + 3 + 2
    assert nats.item() == pytest.approx(3 * math.log(4), rel=1e-6)


# ---------------------------------------------------------------------------- a trained BPE for transformers

@pytest.fixture(scope="module")
def trained_hf(trained, tmp_path_factory):
    """trained, saved for transformers as export.py saves it; and its AutoTokenizer."""
    from transformers import AutoTokenizer
    directory = tmp_path_factory.mktemp("trained_hf")
    Tokenizer(trained).save_pretrained(directory, model_max_length=1024)
    return directory, AutoTokenizer.from_pretrained(directory)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in EDGE_CASES if name != "lone surrogate"] + ["real text"])
def test_transformers_gives_our_ids_and_text_back_with_a_trained_bpe(trained, trained_hf, name):
    ours, (_, hf) = Tokenizer(trained), trained_hf
    texts = real_text(1) + [SHAKESPEARE.read_text(encoding="utf-8")[:200_000]] if name == "real text" else \
        [EDGE_CASES[name]]
    for text in texts:
        ids = ours.encode(text)
        assert hf.encode(text, verbose=False) == ids
        assert hf.decode(ids) == ours.decode(ids) == text


# code points of many scripts and kinds: Latin, Greek, Cyrillic, Hebrew and Arabic, Devanagari, combining marks, kana,
# CJK, Hangul, emoji and their skin tones, general punctuation and spaces, control characters, private use, variation
# selectors
SCRIPTS = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f), (0x300, 0x36f),
           (0x3040, 0x30ff), (0x4e00, 0x4fff), (0xac00, 0xad00), (0x1f300, 0x1f64f), (0x1f3fb, 0x1f3ff),
           (0x2000, 0x206f), (0x0, 0x1f), (0xe000, 0xe0ff), (0xfe00, 0xfe0f)]


@pytest.mark.slow
def test_transformers_gives_our_ids_and_text_back_on_random_text_of_many_scripts(trained, trained_hf):
    ours, (_, hf) = Tokenizer(trained), trained_hf
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(chr(rng.randint(*rng.choice(SCRIPTS))) * rng.choice([1, 1, 1, 2, 5])
                       for _ in range(rng.randint(1, 60)))
        ids = ours.encode(text)
        assert hf.encode(text, verbose=False) == ids, text
        assert hf.decode(ids) == ours.decode(ids) == text


@pytest.mark.slow
def test_transformers_refuses_surrogates_which_ours_replaces_and_then_they_agree(trained, trained_hf):
    # a str with a surrogate cannot cross into the Rust of tokenizers (UTF-8 has none): it raises before
    # tokenizer.json is read, so no export can change it. Ours, as tiktoken, writes U+FFFD for a lone one and joins
    # a pair written as two halves; on the text so cleaned transformers gives our ids
    ours, (_, hf) = Tokenizer(trained), trained_hf
    text = EDGE_CASES["lone surrogate"]  # 'a\ud800b and a pair written apart \ud83d\ude00'
    with pytest.raises(TypeError):
        hf.encode(text)
    cleaned = tokenizer.without_lone_surrogates(text)
    assert cleaned == "a\ufffdb and a pair written apart 😀"
    assert ours.encode(text) == ours.encode(cleaned) == hf.encode(cleaned)


@pytest.mark.slow
def test_transformers_decodes_any_ids_as_ours_does_even_cut_characters(trained, trained_hf):
    ours, (_, hf) = Tokenizer(trained), trained_hf
    rng = random.Random(0)
    for _ in range(2000):  # single bytes that are no UTF-8 alone among them: both write U+FFFD the same way
        ids = [rng.randrange(999) for _ in range(rng.randint(1, 8))]
        assert hf.decode(ids) == ours.decode(ids), ids


@pytest.mark.slow
def test_a_saved_trained_bpe_is_read_back_as_the_same_vocabulary(trained, trained_hf):
    directory, _ = trained_hf
    assert Tokenizer(str(directory)).vocab == trained


def test_without_gpt2s_files_offline_there_are_no_bits_per_byte_but_a_note(tmp_path):
    # train.py trains offline on GPT-2 ids without tiktoken's cache, as before: it only cannot count their bytes
    (tmp_path / "empty_cache").mkdir()
    proc = subprocess.run([sys.executable, "-c", "import tokenizer; print(tokenizer.text_bytes(tokenizer.GPT2_VOCAB))"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **BLOCKED_NETWORK, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty_cache")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no losses in bits per byte: cannot download GPT-2's BPE files") and \
        proc.stdout.endswith("\nNone\n")
