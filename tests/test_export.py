"""export.py against the real transformers and tokenizers: a character model and a model of a BPE trained on its
text (data/prepare_text.py --tokenizer bpe), trained by train.py, and a GPT-2-BPE model, exported, read back by
transformers, sample.py, GPT.from_pretrained and train.py."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from model import GPT, GPTConfig
from tokenizer import Tokenizer
from helpers import (BLOCKED_NETWORK, REPO, SHAKESPEARE, assert_user_error, read_log, run_in_process, run_script,
                     samples, train_here)

# a train.py run and two exports set these tests up, each a process that imports transformers: tens of seconds
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bpe_export(tmp_path_factory):
    """A GPT-2-vocabulary model (50304 ids, biases, GPT-2's tanh GELU) in a checkpoint as train.py writes it,
    exported from a directory without data/. Returns (out_dir, hf_dir)."""
    out_dir = tmp_path_factory.mktemp("bpe") / "out"
    out_dir.mkdir()
    torch.manual_seed(0)
    model_args = dict(n_layer=2, n_head=2, n_embd=32, block_size=64, bias=True, vocab_size=50304, dropout=0.0,
                      gelu_approximate='tanh')
    model = GPT(GPTConfig(**model_args))
    with torch.no_grad():  # so that a zero bias, a unit LayerNorm or a wrong GELU cannot hide
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    torch.save({'model': model.state_dict(), 'optimizer': torch.optim.AdamW(model.parameters()).state_dict(),
                'model_args': model_args, 'iter_num': 7, 'best_val_loss': torch.tensor(5.4321),
                'config': {'dataset': 'openwebtext', 'batch_size': 12},
                'provenance': {'git_commit': 'abc123', 'torch': '2.13.0', 'device': 'cpu'}}, out_dir / 'ckpt.pt')
    assert run_in_process("export.py", f"--out_dir={out_dir}", cwd=out_dir).error is None
    return out_dir, out_dir / "hf"


@pytest.fixture(scope="module")
def trained_export(trained_run, tmp_path_factory):
    """(out_dir, hf_dir): trained_run (a BPE trained on Shakespeare) exported by export.py, from a directory
    without data/: the BPE comes from the checkpoint."""
    hf_dir = tmp_path_factory.mktemp("trained_export") / "hf"
    assert run_in_process("export.py", f"--out_dir={trained_run}", f"--hf_dir={hf_dir}",
                          cwd=hf_dir.parent).error is None
    return trained_run, hf_dir


KINDS = ["char", "bpe", "trained"]


@pytest.fixture(params=KINDS)
def export(request):
    return request.getfixturevalue(f"{request.param}_export")


def our_model(out_dir):
    path = str(out_dir / "ckpt.pt")
    return model_from_checkpoint(load_checkpoint(path), path).eval()


def transformers_model(hf_dir):
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(hf_dir).eval()


def test_export_holds_safetensors_config_tokenizer_and_card(char_export, bpe_export):
    for hf_dir in (char_export[1], bpe_export[1]):
        assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} \
            <= set(os.listdir(hf_dir))
        # a class that transformers 4 knows too (5 writes TokenizersBackend)
        assert json.loads((hf_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    char_config = json.loads((char_export[1] / "config.json").read_text())
    bpe_config = json.loads((bpe_export[1] / "config.json").read_text())
    shape = ("vocab_size", "n_positions", "activation_function")
    assert [char_config[k] for k in shape] == [65, 32, "gelu"]
    assert [bpe_config[k] for k in shape] == [50304, 64, "gelu_new"]
    assert char_config["tie_word_embeddings"] and bpe_config["tie_word_embeddings"]
    assert char_config["architectures"] == ["GPT2LMHeadModel"]


def test_transformers_computes_our_logits(export):
    out_dir, hf_dir = export
    model, hf = our_model(out_dir), transformers_model(hf_dir)
    block_size = model.config.block_size
    idx = torch.randint(0, model.config.vocab_size, (3, block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model(idx, targets=idx)
        theirs = hf(idx).logits
    assert ours.shape == theirs.shape == (3, block_size, model.config.vocab_size)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_bias_false_exports_zero_biases(char_export):
    out_dir, hf_dir = char_export
    assert not our_model(out_dir).config.bias
    biases = {k: v for k, v in transformers_model(hf_dir).state_dict().items() if k.endswith("bias")
              and not k.endswith(".attn.bias")}  # .attn.bias is transformers' causal mask in some versions
    assert len(biases) == 2 * 6 + 1 and all(v.abs().max() == 0 for v in biases.values())


PROMPTS = {"char": "ROMEO:", "bpe": "Hello, world", "trained": "ROMEO: 😀"}  # the emoji: bytes, never seen


def transformers_greedy_text(hf_dir, prompt, max_new_tokens):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = transformers_model(hf_dir).generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                              attention_mask=torch.ones_like(ids), pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + max_new_tokens
    return tokenizer.decode(out[0])


@pytest.mark.parametrize("kind", KINDS)
def test_transformers_greedy_continuation_equals_sample_py_temperature_zero(kind, request, char_data_root):
    out_dir, hf_dir = request.getfixturevalue(f"{kind}_export")
    proc = run_in_process("sample.py", "--device=cpu", f"--out_dir={out_dir}", f"--start={PROMPTS[kind]}",
                          "--temperature=0", "--num_samples=1", "--max_new_tokens=20",
                          cwd=char_data_root if kind == "char" else out_dir)
    assert samples(proc.stdout) == [transformers_greedy_text(hf_dir, PROMPTS[kind], 20)]


@pytest.mark.parametrize("kind", KINDS)
def test_sample_py_reads_an_export_back_with_its_tokenizer(kind, request, tmp_path):
    _, hf_dir = request.getfixturevalue(f"{kind}_export")
    # from an empty directory: no data/shakespeare_char/meta.pkl, so the characters come from the export
    proc = run_in_process("sample.py", "--device=cpu", f"--init_from={hf_dir}", f"--start={PROMPTS[kind]}",
                          "--temperature=0", "--num_samples=1", "--max_new_tokens=20", cwd=tmp_path)
    assert f"Loading the tokenizer saved in {hf_dir}..." in proc.stderr
    assert samples(proc.stdout) == [transformers_greedy_text(hf_dir, PROMPTS[kind], 20)]


def test_from_pretrained_reads_an_export_back_with_zero_biases(char_export):
    out_dir, hf_dir = char_export
    model, loaded = our_model(out_dir), GPT.from_pretrained(str(hf_dir)).eval()
    assert loaded.config.bias and not model.config.bias  # zero biases, which change nothing
    assert (loaded.config.vocab_size, loaded.config.block_size, loaded.config.gelu_approximate) == (65, 32, "none")
    idx = torch.randint(0, 65, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (loaded(idx, idx)[0] - model(idx, idx)[0]).abs().max().item() < 1e-6


def test_from_pretrained_keeps_the_padded_vocab_of_a_bpe_export(bpe_export):
    loaded = GPT.from_pretrained(str(bpe_export[1]))
    assert (loaded.config.vocab_size, loaded.config.gelu_approximate) == (50304, "tanh")


def test_train_py_starts_from_an_export(char_export, char_data_root, tmp_path):
    _, hf_dir = char_export
    train_here(char_data_root, tmp_path / 'out', f"--init_from={hf_dir}", "--max_iters=2", "--eval_interval=2")
    checkpoint = load_checkpoint(str(tmp_path / "out" / "ckpt.pt"))
    assert checkpoint["iter_num"] == 2
    assert {k: checkpoint["model_args"][k] for k in ("n_layer", "n_embd", "vocab_size", "bias")} == \
        dict(n_layer=2, n_embd=32, vocab_size=65, bias=True)


def test_char_tokenizer_encodes_and_decodes_all_of_shakespeare_as_meta_pkl(char_export, char_data_root):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(char_export[1])
    meta = Tokenizer(str(char_data_root / "data" / "shakespeare_char" / "meta.pkl"))
    text = SHAKESPEARE.read_text(encoding="utf-8")
    ids = tokenizer.encode(text)
    assert ids == meta.encode(text) and len(ids) == 1115394
    assert tokenizer.decode(ids) == text


VARIED_TEXT = ("Hello world! It's 2024: naïve café, 日本語, emoji 😀👍🏽, tabs\t\tand   spaces\n\n\r\n  "
               "<|endoftext|>The end. He said \"don't\" , isn't it ?  12345678 ... $x_{i}^2 = 3.14159;\n"
               "    def f(x):  return x**2  # code\u00a0nbsp\u200bzwsp Ünïcödé ΑΒΓ привет مرحبا")


def test_bpe_tokenizer_encodes_and_decodes_like_tiktoken(bpe_export):
    from transformers import AutoTokenizer
    tokenizer, tiktoken_gpt2 = AutoTokenizer.from_pretrained(bpe_export[1]), Tokenizer()
    ids = tokenizer.encode(VARIED_TEXT)
    assert ids == tiktoken_gpt2.encode(VARIED_TEXT)
    assert 50256 in ids  # <|endoftext|> is one token, as sample.py's prompts encode it
    assert tokenizer.decode(ids) == VARIED_TEXT
    assert len(tokenizer) == 50257 and tokenizer.eos_token_id == 50256


def test_train_py_starts_from_a_trained_bpe_export_on_its_dataset(trained_export, trained_data_root, tmp_path):
    # the export's tokenizer is read back as the very BPE of the dataset, so its ids mean the same text
    _, hf_dir = trained_export
    stdout = train_here(trained_data_root, tmp_path / 'out', "--dataset=shakespeare_bpe", f"--init_from={hf_dir}",
                        "--max_iters=1", "--eval_interval=1").stdout
    assert "val bpb" in stdout and load_checkpoint(str(tmp_path / "out" / "ckpt.pt"))["iter_num"] == 1


def test_transformers_never_generates_the_padding_ids(bpe_export):
    generation_config = json.loads((bpe_export[1] / "generation_config.json").read_text())
    assert generation_config["suppress_tokens"] == list(range(50257, 50304))


def test_model_card_holds_config_data_val_loss_and_provenance(char_export, bpe_export):
    out_dir, hf_dir = char_export
    checkpoint = load_checkpoint(str(out_dir / "ckpt.pt"))
    card = (hf_dir / "README.md").read_text(encoding="utf-8")
    assert "library_name: transformers" in card and "| dataset | shakespeare_char |" in card
    assert f"| best val loss | {checkpoint['best_val_loss']:.4f} |" in card and "| iterations | 3 |" in card
    assert '"n_embd": 32' in card and f'"git_commit": {json.dumps(checkpoint["provenance"]["git_commit"])}' in card
    assert "none in training (bias=False); exported as zeros" in card
    assert card.split("---\n")[2].startswith(f"\n# {out_dir.name}\n")  # named for the run, not for its hf folder
    assert "| vocabulary | 65 characters, one token each |" in card
    bpe_card = (bpe_export[1] / "README.md").read_text(encoding="utf-8")
    assert "| best val loss | 5.4321 |" in bpe_card and "padded to 50304" in bpe_card
    assert "| val loss in bits per byte of text | not in the run's log.jsonl |" in bpe_card  # nanoGPT's: no log


def test_model_card_of_a_trained_bpe_gives_its_vocabulary_and_the_val_loss_in_bits_per_byte(trained_export):
    out_dir, hf_dir = trained_export
    card = (hf_dir / "README.md").read_text(encoding="utf-8")
    [val_bpb] = [r["val_bpb"] for r in read_log(out_dir) if r.get("iter") == 3 and "val_bpb" in r]
    assert f"| val loss in bits per byte of text | {val_bpb:.4f} (comparable across vocabularies) |" in card
    assert ("| vocabulary | a byte-level BPE trained on its dataset's text (`--tokenizer bpe`, GPT-2's split), 512 "
            "tokens |") in card


# ---------------------------------------------------------------------------- what must not happen


def files(directory):
    return {name: (directory / name).read_bytes() for name in os.listdir(directory)}


def test_a_save_pretrained_directory_is_never_replaced(bpe_export, tmp_path):
    out_dir, _ = bpe_export
    transformers_model(bpe_export[1]).save_pretrained(tmp_path / "gpt2")  # as the offline gpt2 copy is made
    before = files(tmp_path / "gpt2")
    error = run_in_process("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'gpt2'}", cwd=out_dir).error
    assert error == (f"{tmp_path / 'gpt2'} exists and is not an earlier export of export.py (it holds "
                     f"config.json, generation_config.json, model.safetensors, which export.py did not write); "
                     f"pass another --hf_dir, or move it away")
    assert files(tmp_path / "gpt2") == before and os.listdir(tmp_path) == ["gpt2"]


def test_an_export_holding_a_file_of_the_users_is_not_replaced(bpe_export, tmp_path):
    out_dir, hf_dir = bpe_export
    shutil.copytree(hf_dir, tmp_path / "hf")
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    error = run_in_process("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}", cwd=out_dir).error
    assert "(it holds notes.txt, which export.py did not write)" in error
    assert (tmp_path / "hf" / "notes.txt").read_text() == "mine"


def test_a_char_model_exports_with_its_checkpoints_vocabulary_from_any_directory(char_export, char_data_root,
                                                                                  tmp_path):
    out_dir, hf_dir = char_export
    assert run_in_process("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}",
                          cwd=tmp_path).error is None
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()


def test_a_nanogpt_char_checkpoint_without_its_meta_pkl_is_not_exported_with_gpt2s_tokenizer(char_export, tmp_path):
    out_dir, _ = char_export
    checkpoint = torch.load(out_dir / "ckpt.pt", weights_only=True)
    del checkpoint['vocab']  # nanoGPT's checkpoints name their dataset, and sample.py finds its meta.pkl by that
    (tmp_path / "run").mkdir()
    torch.save(checkpoint, tmp_path / "run" / "ckpt.pt")
    error = run_in_process("export.py", "--out_dir=run", cwd=tmp_path).error
    assert error == ("the model knows 65 tokens but GPT-2 BPE has 50257; it was trained on shakespeare_char: "
                     "run it in the directory that holds data/shakespeare_char/meta.pkl")
    assert os.listdir(tmp_path / "run") == ["ckpt.pt"]


def test_a_meta_pkl_without_its_characters_is_one_line(char_export, tmp_path):
    out_dir, _ = char_export
    checkpoint = torch.load(out_dir / "ckpt.pt", weights_only=True)
    del checkpoint['vocab']  # as nanoGPT's: the characters come from data/shakespeare_char/meta.pkl
    (tmp_path / "run").mkdir()
    torch.save(checkpoint, tmp_path / "run" / "ckpt.pt")
    (tmp_path / "data" / "shakespeare_char").mkdir(parents=True)
    (tmp_path / "data" / "shakespeare_char" / "meta.pkl").write_bytes(pickle.dumps({'vocab_size': 65}))
    error = run_in_process("export.py", "--out_dir=run", cwd=tmp_path).error
    assert error == ("data/shakespeare_char/meta.pkl gives only the vocabulary's size, no characters (stoi and itos): "
                     "nothing can be encoded or decoded with it; run the dataset's prepare.py again")


def test_the_export_files_are_readable_by_everyone_the_umask_allows(char_export):
    _, hf_dir = char_export
    assert {name: os.stat(hf_dir / name).st_mode & 0o777 for name in os.listdir(hf_dir)} == \
        dict.fromkeys(os.listdir(hf_dir), 0o666 & ~current_umask())


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_the_model_cards_example_runs_on_the_cards_model(char_export, tmp_path):
    _, hf_dir = char_export
    card = (hf_dir / "README.md").read_text(encoding="utf-8")
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "max_new_tokens=26" in snippet  # block_size 32 less the prompt's 6 characters
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ROMEO:")


def test_an_interrupted_export_leaves_the_earlier_export_whole(bpe_export, tmp_path):
    out_dir, hf_dir = bpe_export
    earlier = tmp_path / "hf"
    shutil.copytree(hf_dir, earlier)
    before = {name: (earlier / name).read_bytes() for name in os.listdir(earlier)}
    proc = subprocess.Popen([sys.executable, str(REPO / "export.py"), f"--out_dir={out_dir}", f"--hf_dir={earlier}"],
                            cwd=out_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a shell's background job starts with SIGINT ignored: give it Ctrl-C's usual meaning
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # the weights are written first; building GPT-2's tokenizer then takes seconds: interrupt in between
    deadline = time.time() + 120
    while not any((tmp_path / d / "model.safetensors").exists() for d in os.listdir(tmp_path) if ".tmp." in d):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert stderr.endswith("interrupted\n") and "Traceback" not in stderr and proc.returncode == -signal.SIGINT
    assert os.listdir(tmp_path) == ["hf"]  # the half-built export is gone
    assert files(earlier) == before


def test_an_export_killed_on_the_way_leaves_what_the_next_one_removes(bpe_export, tmp_path):
    out_dir, hf_dir = bpe_export
    shutil.copytree(hf_dir, tmp_path / "hf")
    before = files(tmp_path / "hf")
    proc = subprocess.Popen([sys.executable, str(REPO / "export.py"), f"--out_dir={out_dir}",
                             f"--hf_dir={tmp_path / 'hf'}"], cwd=out_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any((tmp_path / d / "model.safetensors").exists() for d in os.listdir(tmp_path) if ".tmp." in d):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.kill()  # kill -9: nothing of export.py runs after it
    proc.wait()
    assert len(os.listdir(tmp_path)) == 2 and files(tmp_path / "hf") == before
    assert run_in_process("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}",
                          cwd=out_dir).error is None
    assert os.listdir(tmp_path) == ["hf"]


def test_exporting_again_replaces_the_earlier_export(bpe_export, tmp_path):
    out_dir, hf_dir = bpe_export
    shutil.copytree(hf_dir, tmp_path / "hf")
    (tmp_path / "hf" / "stale.txt").write_text("from the earlier export")  # an earlier version's, say
    marker = json.loads((tmp_path / "hf" / "nanogpt_export.json").read_text())
    marker['files'].append("stale.txt")
    (tmp_path / "hf" / "nanogpt_export.json").write_text(json.dumps(marker))
    assert run_in_process("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}",
                          cwd=out_dir).error is None
    assert os.listdir(tmp_path) == ["hf"]
    assert sorted(os.listdir(tmp_path / "hf")) == sorted(os.listdir(hf_dir))
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()


def test_push_to_hub_without_a_login_fails_before_exporting(bpe_export, tmp_path):
    out_dir, _ = bpe_export
    proc = run_script("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}", "--push_to_hub=me/my-gpt",
                      cwd=out_dir, check=False, env=dict(HF_HOME=str(tmp_path / "hf_home"), HF_TOKEN=""))
    assert_user_error(proc, "push_to_hub='me/my-gpt' needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    assert not (tmp_path / "hf").exists()


def test_push_to_hub_offline_fails_in_one_line_and_keeps_the_export(bpe_export, tmp_path):
    out_dir, _ = bpe_export
    proc = run_script("export.py", f"--out_dir={out_dir}", f"--hf_dir={tmp_path / 'hf'}", "--push_to_hub=me/my-gpt",
                      cwd=out_dir, check=False, timeout=300,
                      env=dict(HF_HOME=str(tmp_path / "hf_home"), HF_TOKEN="hf_notarealtoken", **BLOCKED_NETWORK))
    assert_user_error(proc, f"the export is in {tmp_path / 'hf'}, but pushing it to the Hub repository me/my-gpt "
                            f"failed")
    assert f"hf upload me/my-gpt {tmp_path / 'hf'}" in proc.stderr
    assert (tmp_path / "hf" / "model.safetensors").exists()
