"""sample.py end to end: checkpoints of train.py and of nanoGPT, char-level and GPT-2 BPE, batches of samples, and
its errors. Most tests run sample.py in this process (its models load in milliseconds); a test starts a process only
for what needs one: the exit code and stderr, stdout's encoding, a stream read as it comes, environment variables."""

import os
import pty
import subprocess
import sys
import threading
import time

import pytest
import tiktoken
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from model import GPT, GPTConfig
from helpers import BLOCKED_NETWORK, REPO, assert_user_error, run_in_process, run_script, samples


def write_checkpoint(out_dir, model, dataset, prefix=""):
    """ckpt.pt as nanoGPT's train.py writes it; prefix='_orig_mod.' as it does for a compiled model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_args = {k: getattr(model.config, k) for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias',
                                                        'vocab_size', 'dropout')}
    torch.save({
        'model': {prefix + k: v for k, v in model.state_dict().items()},
        'optimizer': torch.optim.AdamW(model.parameters()).state_dict(),
        'model_args': model_args,
        'iter_num': 0,
        'best_val_loss': 1e9,
        'config': {'dataset': dataset, 'batch_size': 12, 'compile': bool(prefix)},
    }, out_dir / 'ckpt.pt')
    return out_dir


def char_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65, bias=False))


def spelling_model(text, favour_padded_ids=False):
    """A GPT-2-vocabulary model whose greedy continuation of any 1-token prompt is text, one UTF-8 byte per
    token, so that most tokens hold part of a character. The blocks add nothing (zero c_proj); position p
    embeds as direction p, which only the token due at p+1 shares. favour_padded_ids: ids 50257..50303,
    which GPT-2's tokenizer does not have, outscore those tokens at every position."""
    enc = tiktoken.get_encoding("gpt2")
    targets = [enc.encode_single_token(bytes([b])) for b in text.encode('utf-8')]
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4 * len(targets), block_size=len(targets) + 1,
                          vocab_size=50304, bias=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('c_proj.weight'):
                p.zero_()
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        wte.zero_()
        wpe.zero_()
        for pos, token in enumerate(targets):
            wpe[pos, pos] = 100.0
            wte[token, pos] = 1.0
        if favour_padded_ids:
            wte[50257:, :len(targets)] = 2.0
    return model


def sample_here(*args, cwd):
    """What sample.py prints on stdout (the samples alone) on the CPU, run in this process (helpers.run_in_process);
    it must end without an error."""
    return sample_with_notes(*args, cwd=cwd).stdout


def sample_with_notes(*args, cwd):
    """sample_here's run, with its notes: .stdout and .stderr."""
    result = run_in_process("sample.py", "--device=cpu", *args, cwd=cwd)
    assert result.error is None, result.error
    return result


def refusal(*args, cwd):
    """The message of the UserError that sample.py on the CPU, run in this process, stops with (None: it did not)."""
    return run_in_process("sample.py", "--device=cpu", *args, cwd=cwd).error


def run_sample(*args, cwd, check=True, **kwargs):
    return run_script("sample.py", "--device=cpu", *args, cwd=cwd, check=check, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def char_out(tmp_path_factory):
    """A char-level checkpoint as nanoGPT writes it: no vocabulary inside, its dataset shakespeare_char."""
    return write_checkpoint(tmp_path_factory.mktemp("char") / "out", char_model(), "shakespeare_char")


# ---------------------------------------------------------------------------- char-level

SHAKESPEARE_CHARS = set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def assert_char_samples(texts, num_samples, max_new_tokens):
    """num_samples different texts of the prompt ROMEO: and max_new_tokens characters of the dataset."""
    assert len(texts) == num_samples and len(set(texts)) == num_samples  # each sample draws anew
    for text in texts:
        assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + max_new_tokens
        assert set(text) <= SHAKESPEARE_CHARS


@pytest.mark.slow
def test_samples_from_a_char_checkpoint_written_by_train_py(char_run, char_data_root):
    result = sample_with_notes(f"--out_dir={char_run}", "--start=ROMEO:", "--num_samples=2", "--max_new_tokens=30",
                               cwd=char_data_root)
    assert "using the checkpoint's vocabulary: 65 characters" in result.stderr
    assert_char_samples(samples(result.stdout), num_samples=2, max_new_tokens=30)


@pytest.mark.slow
def test_a_checkpoint_with_its_vocabulary_samples_anywhere(char_run, char_data_root, tmp_path):
    args = (f"--out_dir={char_run}", "--start=ROMEO:", "--num_samples=3", "--max_new_tokens=30")
    away = sample_with_notes(*args, cwd=tmp_path)  # no data/shakespeare_char/meta.pkl here
    assert "using the checkpoint's vocabulary: 65 characters" in away.stderr and "meta.pkl" not in away.stderr
    assert samples(away.stdout) == samples(sample_here(*args, cwd=char_data_root))


def test_samples_from_a_char_checkpoint_written_by_nanogpt(char_out, char_data_root):
    result = sample_with_notes(f"--out_dir={char_out}", "--start=ROMEO:", "--num_samples=3", "--max_new_tokens=40",
                               cwd=char_data_root)
    assert "Loading meta from data/shakespeare_char/meta.pkl..." in result.stderr  # it records no vocabulary
    assert_char_samples(samples(result.stdout), num_samples=3, max_new_tokens=40)


def test_char_checkpoint_of_nanogpt_away_from_its_meta_pkl_says_where_to_run(char_out, tmp_path):
    assert refusal(f"--out_dir={char_out}", cwd=tmp_path) == (
        "the model knows 65 tokens but GPT-2 BPE has 50257; it was trained on shakespeare_char: run it in the "
        "directory that holds data/shakespeare_char/meta.pkl")


def test_orig_mod_prefixed_checkpoint_samples_the_same_text(char_out, tmp_path, char_data_root):
    compiled = write_checkpoint(tmp_path / "compiled", char_model(), "shakespeare_char", prefix="_orig_mod.")
    args = ("--num_samples=2", "--max_new_tokens=30")
    assert samples(sample_here(f"--out_dir={char_out}", *args, cwd=char_data_root)) == \
        samples(sample_here(f"--out_dir={compiled}", *args, cwd=char_data_root))


def test_file_prompt_is_read_from_the_file(char_out, tmp_path, char_data_root):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n", encoding="utf-8")
    stdout = sample_here(f"--out_dir={char_out}", f"--start=FILE:{prompt}", "--num_samples=1", "--max_new_tokens=10",
                         cwd=char_data_root)
    [text] = samples(stdout)
    assert text.startswith(prompt.read_text(encoding="utf-8")) and len(text) == len(prompt.read_text()) + 10


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_file_prompt_that_is_not_a_regular_file_is_refused(kind, char_out, tmp_path, char_data_root):
    # /dev/zero or a FIFO would be read for ever; /dev/null, a device that reads empty, is safe to test with
    path = "/dev/null" if kind == "device" else tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(path)
        # were the FIFO opened, this writer would let it end, and the test fail rather than hang
        threading.Thread(target=feed_fifo_if_opened, args=(path,), daemon=True).start()
    assert refusal(f"--out_dir={char_out}", f"--start=FILE:{path}", cwd=char_data_root) == (
        f"the prompt file {path} is not a file; --start=FILE:PATH names a text file")


def feed_fifo_if_opened(path, wait=5):
    time.sleep(wait)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO when nobody reads it: nothing to do
    except OSError:
        return
    os.write(fd, b"ROMEO:")
    os.close(fd)


def test_generation_runs_past_block_size(char_out, char_data_root):
    result = sample_with_notes(f"--out_dir={char_out}", "--start=" + "a" * 40, "--num_samples=2",
                               "--max_new_tokens=30", cwd=char_data_root)  # block_size 32
    assert "the prompt has 40 tokens; the model sees the last 32 (its block_size)" in result.stderr
    assert [len(text) for text in samples(result.stdout)] == [70, 70]


def test_top_k_none_keeps_every_token(char_out, char_data_root):
    args = (f"--out_dir={char_out}", "--temperature=3.0", "--num_samples=2", "--max_new_tokens=60")
    every_token = samples(sample_here(*args, "--top_k=None", cwd=char_data_root))
    assert every_token == samples(sample_here(*args, "--top_k=65", cwd=char_data_root))  # all 65 characters
    assert every_token != samples(sample_here(*args, "--top_k=3", cwd=char_data_root))


@pytest.mark.parametrize("dtype, temperature", [("float16", 1e-6), ("float32", 1e-45)])
def test_a_tiny_temperature_samples_the_most_likely_tokens(dtype, temperature, char_out, char_data_root):
    # logits / temperature overflow to inf: sampling must still give the greedy tokens, not fail
    args = (f"--out_dir={char_out}", f"--dtype={dtype}", "--num_samples=2", "--max_new_tokens=30")
    tiny = samples(sample_here(*args, f"--temperature={temperature}", cwd=char_data_root))
    assert tiny == samples(sample_here(*args, "--temperature=0", cwd=char_data_root))


# ---------------------------------------------------------------------------- batches of samples


def test_greedy_samples_of_a_batch_are_the_single_greedy_sample(char_out, char_data_root):
    args = (f"--out_dir={char_out}", "--start=ROMEO:", "--temperature=0", "--max_new_tokens=40")  # past block_size
    [single] = samples(sample_here(*args, "--num_samples=1", cwd=char_data_root))  # streamed token by token
    assert samples(sample_here(*args, "--num_samples=4", cwd=char_data_root)) == [single] * 4  # one batch, whole


def test_sampled_rows_differ_and_the_seed_repeats_them(char_out, char_data_root):
    args = (f"--out_dir={char_out}", "--start=ROMEO:", "--num_samples=4", "--max_new_tokens=30")
    result = sample_with_notes(*args, cwd=char_data_root)
    first = result.stdout
    assert "samples 1-4" not in result.stderr  # no progress where stderr is not a terminal
    assert len(set(samples(first))) == 4
    assert sample_here(*args, cwd=char_data_root) == first
    assert not set(samples(sample_here(*args, "--seed=1", cwd=char_data_root))) & set(samples(first))


def test_more_samples_than_max_batch_size_run_in_batches_showing_progress_on_a_terminal(
        char_out, char_data_root, monkeypatch):
    master, terminal = pty.openpty()
    monkeypatch.setattr(sys, 'stderr', open(terminal, 'w'))
    result = run_in_process("sample.py", "--device=cpu", f"--out_dir={char_out}", "--num_samples=5",
                            "--max_batch_size=2", "--max_new_tokens=20", cwd=char_data_root, capture_stderr=False)
    assert result.error is None, result.error
    stdout = result.stdout
    sys.stderr.close()
    progress = os.read(master, 65536).decode()  # a few hundred bytes, well within what a terminal buffers
    os.close(master)
    texts = samples(stdout)
    assert len(texts) == 5 and len(set(texts)) == 5 and all(len(text) == 21 for text in texts)
    # batches as even as they come: 2, 2 and 1, which streams
    assert "\rsamples 1-2 of 5: 1/20 tokens\033[K" in progress and "\rsamples 1-2 of 5: 20/20 tokens\033[K" in progress
    assert "\rsamples 3-4 of 5: 20/20 tokens\033[K" in progress and "5 of 5" not in progress
    assert progress.endswith("\r\033[K")  # the line erased before the samples print
    assert "samples" not in stdout


def test_a_batch_too_large_for_memory_says_what_to_lower(char_out, char_data_root):
    rows = 2 ** 45  # its keys and values would take 2**57 bytes: more than any address space
    error = refusal(f"--out_dir={char_out}", f"--num_samples={rows}", f"--max_batch_size={rows}", cwd=char_data_root)
    assert error.startswith(f"out of memory drawing {rows} samples at once; lower --max_batch_size (")
    assert "can't allocate memory" in error


@pytest.mark.slow
def test_one_sample_is_printed_as_it_is_generated(char_out, char_data_root):
    # 20,000 tokens take the tiny model many seconds; the prompt and first tokens come at once
    proc = subprocess.Popen([sys.executable, str(REPO / "sample.py"), "--device=cpu", f"--out_dir={char_out}",
                             "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=20000"], cwd=char_data_root,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, 'PYTHONUNBUFFERED': ''})
    try:
        head = b""
        while b"ROMEO:" not in head or len(head.split(b"ROMEO:")[-1]) < 10:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, head
            head += chunk
        assert proc.poll() is None  # still generating
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- GPT-2 BPE

def test_bpe_checkpoint_without_meta_samples_gpt2_tokens(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50304))
    out_dir = write_checkpoint(tmp_path / "out", model, "openwebtext")  # no data/openwebtext/meta.pkl in cwd
    result = sample_with_notes(f"--out_dir={out_dir}", "--start=Hello, world", "--num_samples=2",
                               "--max_new_tokens=20", "--temperature=1.0", "--top_k=50304", cwd=tmp_path)
    stdout = result.stdout
    assert "No meta.pkl found, assuming GPT-2 encodings..." in result.stderr
    # the same draws here: sample.py seeds before it builds the model, whose initialisation draws too
    enc = tiktoken.get_encoding("gpt2")
    torch.manual_seed(1337)
    model = model_from_checkpoint(load_checkpoint(str(out_dir / "ckpt.pt")), "ckpt.pt").eval()
    prompt = torch.tensor([enc.encode("Hello, world")])
    rows = model.generate(prompt, 20, temperature=1.0, top_k=50304, vocab_limit=50257, num_samples=2)
    expected = [enc.decode(row) for row in rows.tolist()]
    assert samples(stdout) == expected and expected[0] != expected[1]


@pytest.mark.parametrize("num_samples", [1, 3], ids=["streamed", "whole"])
def test_bpe_samples_print_whole_characters_split_across_tokens(num_samples, tmp_path):
    text = "é日😀"  # 2, 3 and 4 UTF-8 bytes, each byte its own token
    out_dir = write_checkpoint(tmp_path / "out", spelling_model(text), "openwebtext")
    stdout = sample_here(f"--out_dir={out_dir}", "--temperature=0", f"--num_samples={num_samples}",
                         "--max_new_tokens=9", cwd=tmp_path)
    assert samples(stdout) == ["\n" + text] * num_samples


def test_padded_vocab_ids_are_never_sampled(tmp_path):
    text = "é日😀"
    out_dir = write_checkpoint(tmp_path / "out", spelling_model(text, favour_padded_ids=True), "openwebtext")
    stdout = sample_here(f"--out_dir={out_dir}", "--temperature=0", "--num_samples=2", "--max_new_tokens=9",
                         cwd=tmp_path)
    assert samples(stdout) == ["\n" + text] * 2  # the best ids tiktoken knows, not the better padded ones


@pytest.mark.slow
def test_a_prompt_outside_the_terminals_encoding_prints_escaped(tmp_path):
    out_dir = write_checkpoint(tmp_path / "out", spelling_model("é日😀"), "openwebtext")
    proc = run_sample(f"--out_dir={out_dir}", "--start=é", "--temperature=0", "--num_samples=1", "--max_new_tokens=9",
                      cwd=tmp_path, env={'PYTHONIOENCODING': 'ascii'})
    assert "Overriding: start = '\\xe9'" in proc.stderr
    assert samples(proc.stdout) == ["\\xe9\\xe9\\u65e5\\U0001f600"]


@pytest.mark.slow
def test_samples_from_a_directory_saved_by_transformers(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(tmp_path / "hf")
    stdout = sample_here(f"--init_from={tmp_path / 'hf'}", "--start=Hello", "--num_samples=1", "--max_new_tokens=5",
                         "--temperature=0", cwd=tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.tensor([tiktoken.get_encoding("gpt2").encode("Hello")])
    greedy = hf.generate(prompt, max_new_tokens=5, do_sample=False, attention_mask=torch.ones_like(prompt))
    assert samples(stdout) == [tiktoken.get_encoding("gpt2").decode(greedy[0].tolist())]


# ---------------------------------------------------------------------------- errors


ERRORS = {
    'prompt_char_not_in_vocab': ("--start=Hi @ and #", "characters not in the vocabulary of "
                                                       "data/shakespeare_char/meta.pkl: '#@'"),
    'missing_out_dir': ("--out_dir=no-such-dir", "no checkpoint at no-such-dir/ckpt.pt"),
    'missing_prompt_file': ("--start=FILE:no-such-prompt.txt", "cannot read the prompt file no-such-prompt.txt: "
                                                              "No such file or directory"),
    'empty_prompt': ("--start=", "the prompt is empty"),
    'device_not_here': ("--device=cuda:7", "device=cuda:7"),
    'unknown_dtype': ("--dtype=float64", "dtype='float64' must be one of 'float32', 'bfloat16', 'float16', None"),
    'negative_temperature': ("--temperature=-1", "temperature=-1.0 must be at least 0.0"),
    'top_p_out_of_range': ("--top_p=1.5", "top_p=1.5 must be in (0.0, 1.0], or None"),
    'unknown_init_from': ("--init_from=gpt3", "init_from='gpt3' is not 'scratch', 'resume', a GPT-2 model"),
    'negative_max_new_tokens': ("--max_new_tokens=-5", "max_new_tokens=-5 must be at least 1"),
    'negative_num_samples': ("--num_samples=-1", "num_samples=-1 must be at least 1"),
    'max_batch_size_zero': ("--max_batch_size=0", "max_batch_size=0 must be at least 1"),
    'top_k_zero': ("--top_k=0", "top_k=0 must be at least 1 (below 2**63), or None"),
    'top_k_not_a_number': ("--top_k=all", "top_k must be int like its default 200, got 'all'"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_user_mistake_is_refused_with_what_to_do(case, char_out, char_data_root):
    arg, message = ERRORS[case]
    # the last value given wins
    assert message in refusal(f"--out_dir={char_out}", "--num_samples=1", "--max_new_tokens=5", arg, cwd=char_data_root)


@pytest.mark.slow
def test_user_mistake_ends_in_one_line_without_traceback(char_out, char_data_root):
    proc = run_sample(f"--out_dir={char_out}", "--start=Hi @ and #", cwd=char_data_root, check=False)
    assert_user_error(proc, "characters not in the vocabulary of data/shakespeare_char/meta.pkl: '#@'")


# ---------------------------------------------------------------------------- offline


@pytest.mark.slow
def test_gpt2_weights_offline_fail_in_one_line_naming_the_local_ways(tmp_path):
    proc = run_script("sample.py", "--init_from=gpt2", "--device=cpu", cwd=tmp_path, check=False, timeout=120,
                      env=dict(HF_HOME=str(tmp_path / "empty_hf_home"), **BLOCKED_NETWORK))
    assert_user_error(proc, "init_from='gpt2': cannot download gpt2's weights from the Hugging Face Hub (")
    assert_user_error(proc, "); offline, run GPT2LMHeadModel.from_pretrained('gpt2').save_pretrained('gpt2') on a "
                            "machine with network, copy that directory here and pass its path as init_from, or copy "
                            "that machine's Hugging Face cache (~/.cache/huggingface, or $HF_HOME) here")


@pytest.mark.slow
def test_bpe_checkpoint_without_tiktoken_cache_offline_fails_in_one_line_before_building_the_model(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50304))
    out_dir = write_checkpoint(tmp_path / "out", model, "openwebtext")
    (tmp_path / "empty_cache").mkdir()
    proc = run_script("sample.py", f"--out_dir={out_dir}", "--device=cpu", cwd=tmp_path, check=False, timeout=120,
                      env=dict(TIKTOKEN_CACHE_DIR=str(tmp_path / "empty_cache"), **BLOCKED_NETWORK))
    assert_user_error(proc, "cannot download GPT-2's BPE files vocab.bpe and encoder.json")
    assert "set TIKTOKEN_CACHE_DIR" in proc.stderr and "number of parameters" not in proc.stderr
