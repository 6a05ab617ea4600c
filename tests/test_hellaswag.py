"""HellaSwag scoring against a hand computation with a tiny random GPT, and eval_hellaswag.py end to end."""

import json
import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import tiktoken
import torch
from torch.nn import functional as F

from checkpoint import save_checkpoint
from errors import UserError
from eval_hellaswag import DEFAULT_FILE, evaluate_hellaswag, load_examples, score_example
from helpers import HELLASWAG_EXAMPLES, REPO, run_script, serve_files
from model import GPT, GPTConfig
from tokenizer import Tokenizer

TINY = dict(block_size=64, vocab_size=50304, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)


def tiny_gpt(**overrides):
    torch.manual_seed(1337)
    model = GPT(GPTConfig(**{**TINY, **overrides}))
    # a freshly initialised GPT predicts nearly uniformly; larger output weights make the candidates' losses
    # differ by far more than float rounding, so the argmins are the same however the rows are batched
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_gpt()


@pytest.fixture
def hellaswag_file(tmp_path):
    path = tmp_path / "hellaswag_val.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in HELLASWAG_EXAMPLES))
    return path


def hand_losses(model, example, block_size=None):
    """Summed and average loss of each ending, one unpadded row at a time, from the model's logits.
    With block_size: the row keeps its last block_size + 1 tokens (all of them but the last are input)."""
    enc = tiktoken.get_encoding("gpt2")
    ctx = enc.encode(example["ctx"])
    sums, avgs = [], []
    for ending in example["endings"]:
        end = enc.encode(" " + ending)
        tokens = ctx + end
        if block_size is not None:
            tokens = tokens[-(block_size + 1):]
        idx = torch.tensor([tokens[:-1]])  # the last token is only predicted
        with torch.no_grad():
            logits, _ = model(idx, idx)  # any targets: with them the model returns every position's logits
        logprobs = F.log_softmax(logits[0], dim=-1)
        # the token at position p is predicted from position p - 1
        nll = [-logprobs[p - 1, tokens[p]].item() for p in range(len(tokens) - len(end), len(tokens))]
        sums.append(sum(nll))
        avgs.append(sum(nll) / len(nll))
    return torch.tensor(sums), torch.tensor(avgs)


def test_each_ending_is_scored_by_its_summed_and_average_token_loss(model):
    for example in HELLASWAG_EXAMPLES:
        sum_loss, avg_loss = score_example(model, example, Tokenizer(), 'cpu', nullcontext())
        want_sum, want_avg = hand_losses(model, example)
        torch.testing.assert_close(sum_loss, want_sum, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(avg_loss, want_avg, rtol=1e-5, atol=1e-4)


def test_accuracy_counts_the_lowest_summed_and_the_lowest_average_loss(model, hellaswag_file):
    examples = load_examples(hellaswag_file)
    assert examples == HELLASWAG_EXAMPLES
    hand = [hand_losses(model, e) for e in HELLASWAG_EXAMPLES]
    pred = [s.argmin().item() for s, _ in hand]
    pred_norm = [a.argmin().item() for _, a in hand]
    labels = [e["label"] for e in HELLASWAG_EXAMPLES]
    want = dict(acc=sum(p == l for p, l in zip(pred, labels)) / 4,
                acc_norm=sum(p == l for p, l in zip(pred_norm, labels)) / 4, n=4)
    assert want["acc"] != want["acc_norm"]  # the examples tell the two apart: a sum favours short endings
    assert evaluate_hellaswag(model, examples, 'cpu', nullcontext()) == want


def test_model_mode_is_restored(model):
    model.train()
    evaluate_hellaswag(model, HELLASWAG_EXAMPLES[:1], 'cpu', nullcontext())
    assert model.training
    model.eval()


def test_context_longer_than_block_size_keeps_its_last_tokens():
    block_size = 16
    model = tiny_gpt(block_size=block_size)
    example = dict(HELLASWAG_EXAMPLES[0], ctx="It was a cold morning in the north, and the snow had fallen all night long. "
                                    "Cars were buried up to their mirrors along the street. " + HELLASWAG_EXAMPLES[0]["ctx"])
    sum_loss, avg_loss = score_example(model, example, Tokenizer(), 'cpu', nullcontext())
    want_sum, want_avg = hand_losses(model, example, block_size)
    torch.testing.assert_close(sum_loss, want_sum, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(avg_loss, want_avg, rtol=1e-5, atol=1e-4)


def test_character_level_model_is_refused():
    model = tiny_gpt(vocab_size=65)
    with pytest.raises(UserError, match="needs a model of a byte-level BPE .* this one has 65 token ids"):
        evaluate_hellaswag(model, HELLASWAG_EXAMPLES, 'cpu', nullcontext())


def test_malformed_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "hellaswag_val.jsonl"
    path.write_text(json.dumps(HELLASWAG_EXAMPLES[0]) + "\n" + json.dumps(dict(HELLASWAG_EXAMPLES[1], endings=["one"])) + "\n")
    with pytest.raises(UserError, match="line 2 is not a HellaSwag example"):
        load_examples(path)


def served_examples(tmp_path):
    """A folder holding the examples as hellaswag_val.jsonl, to serve over HTTP."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "hellaswag_val.jsonl").write_text("".join(json.dumps(e) + "\n" for e in HELLASWAG_EXAMPLES))
    return served


def test_missing_default_file_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with serve_files(served_examples(tmp_path)) as url:
        assert load_examples(DEFAULT_FILE, url=f"{url}/hellaswag_val.jsonl") == HELLASWAG_EXAMPLES
    assert os.listdir("data/hellaswag") == ["hellaswag_val.jsonl"]  # no temporary file left


def test_missing_named_file_is_an_error_not_a_download(tmp_path):
    # a mistyped --hellaswag_file must not quietly become a copy of the official set
    path = tmp_path / "hellaswag_vla.jsonl"
    with serve_files(served_examples(tmp_path)) as url:
        with pytest.raises(UserError) as error:
            load_examples(str(path), url=f"{url}/hellaswag_val.jsonl")
    assert str(error.value) == (f"no HellaSwag file at {path}; check the path, or leave out --hellaswag_file to "
                                f"download the official set to data/hellaswag/hellaswag_val.jsonl")
    assert not path.exists()


def test_malformed_named_file_is_not_to_be_deleted(tmp_path):
    path = tmp_path / "my_examples.jsonl"
    path.write_text(json.dumps(HELLASWAG_EXAMPLES[0]) + "\n" + '{"ctx": "no endings"}\n')
    with pytest.raises(UserError) as error:
        load_examples(str(path))
    assert str(error.value) == (f"{path} line 2 is not a HellaSwag example (JSON with ctx, 4 endings and a label "
                                f"0-3); fix the file or point --hellaswag_file at another")


def test_malformed_default_file_can_be_deleted_to_download_it_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("data/hellaswag")
    with open(DEFAULT_FILE, "w") as f:
        f.write("<html>rate limited</html>\n")
    with pytest.raises(UserError, match=r"line 1 is not a HellaSwag example .*; delete the file to download it "
                                        r"again$"):
        load_examples(DEFAULT_FILE)


def test_empty_named_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match=r"holds no examples; fix the file or point --hellaswag_file at another$"):
        load_examples(str(path))


# an unreachable proxy makes the download fail at once, with or without a network
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


@pytest.mark.slow
def test_a_missing_checkpoint_is_said_before_any_download(tmp_path):
    proc = run_script("eval_hellaswag.py", "--device=cpu", cwd=tmp_path, env=NO_NETWORK, check=False, timeout=60)
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (1, "error: no checkpoint at out/ckpt.pt; train one "
                                                               "first or point --out_dir at the run's directory")
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_failed_download_says_where_to_put_the_file(tmp_path, checkpoint_dir):
    proc = run_script("eval_hellaswag.py", "--device=cpu", f"--out_dir={checkpoint_dir}", cwd=tmp_path, env=NO_NETWORK,
                      check=False, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] + "\n" == ("error: cannot download https://raw.githubusercontent.com/rowanz/hellaswag/master/data/"
                           "hellaswag_val.jsonl ([Errno 111] Connection refused); download it yourself and "
                           "put it at data/hellaswag/hellaswag_val.jsonl, or point --hellaswag_file at a copy\n")
    assert os.listdir(tmp_path / "data" / "hellaswag") == []


@pytest.mark.slow
def test_mistyped_file_on_the_command_line_is_a_one_line_error(tmp_path, checkpoint_dir):
    proc = run_script("eval_hellaswag.py", "--device=cpu", f"--out_dir={checkpoint_dir}",
                      f"--hellaswag_file={tmp_path / 'typo.jsonl'}", cwd=tmp_path, env=NO_NETWORK, check=False,
                      timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] + "\n" == (f"error: no HellaSwag file at {tmp_path / 'typo.jsonl'}; check the path, or leave out "
                           f"--hellaswag_file to download the official set to data/hellaswag/hellaswag_val.jsonl\n")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, model):
    out_dir = tmp_path_factory.mktemp("out")
    save_checkpoint({'model': model.state_dict(), 'model_args': TINY, 'config': {'dataset': 'openwebtext'},
                     'iter_num': 0, 'best_val_loss': 1e9, 'optimizer': {}}, out_dir, "ckpt.pt")
    return out_dir


@pytest.mark.slow
def test_cli_evaluates_a_checkpoint(model, checkpoint_dir, hellaswag_file):
    proc = run_script("eval_hellaswag.py", "--init_from=resume", f"--out_dir={checkpoint_dir}",
                      f"--hellaswag_file={hellaswag_file}", "--device=cpu", "--max_examples=3", timeout=120)
    want = evaluate_hellaswag(model, HELLASWAG_EXAMPLES[:3], 'cpu', nullcontext())
    assert (f"HellaSwag on 3 examples: acc_norm {want['acc_norm']:.4f} (lowest average per-token loss of the "
            f"ending), acc {want['acc']:.4f} (lowest summed loss)") in proc.stdout


DISTRIBUTED_SCRIPT = """
import json, sys
from contextlib import nullcontext
import torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from checkpoint import load_checkpoint, model_from_checkpoint
from eval_hellaswag import evaluate_hellaswag, load_examples
dist.init_process_group('gloo')
model = model_from_checkpoint(load_checkpoint(sys.argv[2]), sys.argv[2])
result = evaluate_hellaswag(model, load_examples(sys.argv[3])[:3], 'cpu', nullcontext(),
                            dist.get_rank(), dist.get_world_size())
with open(f"rank{dist.get_rank()}.json", "w") as f:
    json.dump(result, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ranks_share_the_examples_and_sum_their_counts(model, checkpoint_dir, hellaswag_file, tmp_path):
    script = tmp_path / "hellaswag_ddp.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(REPO), str(checkpoint_dir / "ckpt.pt"), str(hellaswag_file)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(tmp_path)})  # torchrun leaves a folder in the temp dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = evaluate_hellaswag(model, HELLASWAG_EXAMPLES[:3], 'cpu', nullcontext())  # 2 examples on rank 0, 1 on rank 1
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == want
