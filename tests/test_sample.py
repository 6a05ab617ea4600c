"""sample.py end to end: checkpoints of train.py and of nanoGPT, char-level and GPT-2 BPE, and its errors."""

import pytest
import tiktoken
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from model import GPT, GPTConfig
from helpers import BLOCKED_NETWORK, assert_user_error, run_script, samples


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


def run_sample(*args, cwd, check=True):
    return run_script("sample.py", "--device=cpu", *args, cwd=cwd, check=check, timeout=120)


# ---------------------------------------------------------------------------- char-level

SHAKESPEARE_CHARS = set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def assert_char_samples(stdout, num_samples, max_new_tokens):
    """num_samples different texts of the prompt ROMEO: and max_new_tokens characters of the dataset."""
    assert "Loading meta from data/shakespeare_char/meta.pkl..." in stdout
    texts = samples(stdout)
    assert len(texts) == num_samples and len(set(texts)) == num_samples  # each sample draws anew
    for text in texts:
        assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + max_new_tokens
        assert set(text) <= SHAKESPEARE_CHARS


@pytest.mark.slow
def test_samples_from_a_char_checkpoint_written_by_train_py(tmp_path, char_data_root):
    run_script("train.py", "--dataset=shakespeare_char", "--device=cpu", "--compile=False", "--n_layer=2",
               "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--gradient_accumulation_steps=1",
               "--max_iters=4", "--eval_interval=4", "--eval_iters=2", "--warmup_iters=0", "--lr_decay_iters=4",
               f"--out_dir={tmp_path / 'out'}", cwd=char_data_root, timeout=120)
    proc = run_sample(f"--out_dir={tmp_path / 'out'}", "--start=ROMEO:", "--num_samples=2", "--max_new_tokens=30",
                      cwd=char_data_root)
    assert_char_samples(proc.stdout, num_samples=2, max_new_tokens=30)


def test_samples_from_a_char_checkpoint_written_by_nanogpt(tmp_path, char_data_root):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    proc = run_sample(f"--out_dir={out_dir}", "--start=ROMEO:", "--num_samples=3", "--max_new_tokens=40",
                      cwd=char_data_root)
    assert_char_samples(proc.stdout, num_samples=3, max_new_tokens=40)


@pytest.mark.slow
def test_orig_mod_prefixed_checkpoint_samples_the_same_text(tmp_path, char_data_root):
    plain = write_checkpoint(tmp_path / "plain", char_model(), "shakespeare_char")
    compiled = write_checkpoint(tmp_path / "compiled", char_model(), "shakespeare_char", prefix="_orig_mod.")
    args = ("--num_samples=2", "--max_new_tokens=30")
    assert samples(run_sample(f"--out_dir={plain}", *args, cwd=char_data_root).stdout) == \
        samples(run_sample(f"--out_dir={compiled}", *args, cwd=char_data_root).stdout)


@pytest.mark.slow
def test_file_prompt_is_read_from_the_file(tmp_path, char_data_root):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n", encoding="utf-8")
    proc = run_sample(f"--out_dir={out_dir}", f"--start=FILE:{prompt}", "--num_samples=1", "--max_new_tokens=10",
                      cwd=char_data_root)
    [text] = samples(proc.stdout)
    assert text.startswith(prompt.read_text(encoding="utf-8")) and len(text) == len(prompt.read_text()) + 10


@pytest.mark.slow
def test_temperature_zero_gives_the_same_text_every_time(tmp_path, char_data_root):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    args = (f"--out_dir={out_dir}", "--temperature=0", "--num_samples=2", "--max_new_tokens=40")
    first, second = samples(run_sample(*args, cwd=char_data_root).stdout)  # the RNG has moved on between them
    assert first == second


@pytest.mark.slow
def test_generation_runs_past_block_size(tmp_path, char_data_root):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")  # block_size 32
    proc = run_sample(f"--out_dir={out_dir}", "--start=" + "a" * 40, "--num_samples=1", "--max_new_tokens=30",
                      cwd=char_data_root)
    assert "the prompt has 40 tokens; the model sees the last 32 (its block_size)" in proc.stdout
    assert len(samples(proc.stdout)[0]) == 70


@pytest.mark.slow
def test_top_k_none_keeps_every_token(tmp_path, char_data_root):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    args = (f"--out_dir={out_dir}", "--temperature=3.0", "--num_samples=2", "--max_new_tokens=60")
    every_token = samples(run_sample(*args, "--top_k=None", cwd=char_data_root).stdout)
    assert every_token == samples(run_sample(*args, "--top_k=65", cwd=char_data_root).stdout)  # all 65 characters
    assert every_token != samples(run_sample(*args, "--top_k=3", cwd=char_data_root).stdout)


@pytest.mark.parametrize("dtype, temperature", [("float16", 1e-6), ("float32", 1e-45)])
@pytest.mark.slow
def test_a_tiny_temperature_samples_the_most_likely_tokens(dtype, temperature, tmp_path, char_data_root):
    # logits / temperature overflow to inf: sampling must still give the greedy tokens, not fail
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    args = (f"--out_dir={out_dir}", f"--dtype={dtype}", "--num_samples=1", "--max_new_tokens=30")
    tiny = samples(run_sample(*args, f"--temperature={temperature}", cwd=char_data_root).stdout)
    assert tiny == samples(run_sample(*args, "--temperature=0", cwd=char_data_root).stdout)


# ---------------------------------------------------------------------------- GPT-2 BPE

@pytest.mark.slow
def test_bpe_checkpoint_without_meta_samples_gpt2_tokens(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50304))
    out_dir = write_checkpoint(tmp_path / "out", model, "openwebtext")  # no data/openwebtext/meta.pkl in cwd
    proc = run_sample(f"--out_dir={out_dir}", "--start=Hello, world", "--num_samples=2", "--max_new_tokens=20",
                      "--temperature=1.0", "--top_k=50304", cwd=tmp_path)
    assert "No meta.pkl found, assuming GPT-2 encodings..." in proc.stdout
    # the same draws in this process: sample.py seeds before it builds the model, whose initialisation draws too
    enc = tiktoken.get_encoding("gpt2")
    torch.manual_seed(1337)
    model = model_from_checkpoint(load_checkpoint(str(out_dir / "ckpt.pt")), "ckpt.pt").eval()
    prompt = torch.tensor([enc.encode("Hello, world")])
    expected = [enc.decode(model.generate(prompt, 20, temperature=1.0, top_k=50304, vocab_limit=50257)[0].tolist())
                for _ in range(2)]
    assert samples(proc.stdout) == expected and expected[0] != expected[1]


@pytest.mark.slow
def test_bpe_stream_prints_whole_characters_split_across_tokens(tmp_path):
    text = "é日😀"  # 2, 3 and 4 UTF-8 bytes, each byte its own token
    out_dir = write_checkpoint(tmp_path / "out", spelling_model(text), "openwebtext")
    proc = run_sample(f"--out_dir={out_dir}", "--temperature=0", "--num_samples=1", "--max_new_tokens=9",
                      cwd=tmp_path)
    assert samples(proc.stdout) == ["\n" + text]


@pytest.mark.slow
def test_padded_vocab_ids_are_never_sampled(tmp_path):
    text = "é日😀"
    out_dir = write_checkpoint(tmp_path / "out", spelling_model(text, favour_padded_ids=True), "openwebtext")
    proc = run_sample(f"--out_dir={out_dir}", "--temperature=0", "--num_samples=1", "--max_new_tokens=9",
                      cwd=tmp_path)
    assert samples(proc.stdout) == ["\n" + text]  # the best ids tiktoken knows, not the better padded ones


@pytest.mark.slow
def test_samples_from_a_directory_saved_by_transformers(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(tmp_path / "hf")
    proc = run_sample(f"--init_from={tmp_path / 'hf'}", "--start=Hello", "--num_samples=1", "--max_new_tokens=5",
                      "--temperature=0", cwd=tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.tensor([tiktoken.get_encoding("gpt2").encode("Hello")])
    greedy = hf.generate(prompt, max_new_tokens=5, do_sample=False, attention_mask=torch.ones_like(prompt))
    assert samples(proc.stdout) == [tiktoken.get_encoding("gpt2").decode(greedy[0].tolist())]


# ---------------------------------------------------------------------------- errors


ERRORS = {
    'prompt_char_not_in_vocab': ("--start=Hi @ and #", "characters not in the vocabulary of "
                                                       "data/shakespeare_char/meta.pkl: '#@'"),
    'missing_out_dir': ("--out_dir=no-such-dir", "no checkpoint at no-such-dir/ckpt.pt"),
    'missing_prompt_file': ("--start=FILE:no-such-prompt.txt", "cannot read the prompt file no-such-prompt.txt: "
                                                              "No such file or directory"),
    'empty_prompt': ("--start=", "the prompt is empty"),
    'device_not_here': ("--device=cuda:7", "device=cuda:7"),
    'unknown_dtype': ("--dtype=float64", "dtype='float64' is not supported"),
    'negative_temperature': ("--temperature=-1", "temperature=-1.0 must be >= 0"),
    'top_p_out_of_range': ("--top_p=1.5", "top_p=1.5 must be in (0, 1]"),
    'unknown_init_from': ("--init_from=gpt3", "'gpt3' is neither a GPT-2 model name"),
    'negative_max_new_tokens': ("--max_new_tokens=-5", "max_new_tokens=-5 must be at least 1"),
    'negative_num_samples': ("--num_samples=-1", "num_samples=-1 must be at least 1"),
    'top_k_zero': ("--top_k=0", "top_k=0 must be a whole number of at least 1, or None to keep every token"),
    'top_k_not_a_number': ("--top_k=all", "top_k='all' must be a whole number of at least 1, or None"),
}


@pytest.mark.parametrize("case", ERRORS)
@pytest.mark.slow
def test_user_error_is_one_line_without_traceback(case, tmp_path, char_data_root):
    arg, message = ERRORS[case]
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    # the last value given wins
    proc = run_sample(f"--out_dir={out_dir}", "--num_samples=1", "--max_new_tokens=5", arg, cwd=char_data_root,
                      check=False)
    assert_user_error(proc, message)


@pytest.mark.slow
def test_char_checkpoint_away_from_its_meta_pkl_says_where_to_run(tmp_path):
    out_dir = write_checkpoint(tmp_path / "out", char_model(), "shakespeare_char")
    proc = run_sample(f"--out_dir={out_dir}", cwd=tmp_path, check=False)  # no data/shakespeare_char/ here
    assert_user_error(proc, "the model knows 65 tokens but GPT-2 BPE has 50257; it was trained on shakespeare_char: "
                            "run it in the directory that holds data/shakespeare_char/meta.pkl")


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
    assert "set TIKTOKEN_CACHE_DIR" in proc.stderr and "number of parameters" not in proc.stdout
