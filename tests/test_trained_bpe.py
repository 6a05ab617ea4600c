"""A BPE trained on your own text (data/prepare_text.py --tokenizer bpe), carried from the dataset into the
checkpoint, and from there used by resume, sample.py and eval_hellaswag.py; losses in bits per byte of text.
The export to transformers is in test_export.py."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from dataloader import get_batch, open_dataset
from eval_hellaswag import evaluate_hellaswag
from helpers import HELLASWAG_EXAMPLES, SHAKESPEARE, TINY, read_log, run_in_process, run_script, samples, train_here
from tokenizer import Tokenizer, describe, load_meta, text_bytes


def dataset_vocab(root):
    return load_meta(root / "data" / "shakespeare_bpe" / "meta.pkl")


def test_the_checkpoint_records_the_datasets_trained_bpe_as_its_vocabulary(trained_data_root, trained_run):
    checkpoint = load_checkpoint(trained_run / "ckpt.pt")
    vocab = dataset_vocab(trained_data_root)
    assert checkpoint["vocab"] == vocab and vocab["bpe"] == "trained"
    assert checkpoint["model_args"]["vocab_size"] == 512


def test_each_eval_logs_the_loss_in_bits_per_byte_of_the_text_its_targets_stand_for(trained_data_root, trained_run):
    # the eval batches hold no <|endoftext|> (the one after Shakespeare is val.bin's last token): their summed loss
    # in nats, over ln 2 and the bytes of their targets' text
    record = [r for r in read_log(trained_run) if "val_bpb" in r][-1]
    token_bytes = torch.tensor(text_bytes(dataset_vocab(trained_data_root)))
    data = open_dataset(trained_data_root / "data" / "shakespeare_bpe", 32)
    eval_batches = [get_batch(data, "val", 4, 32, 1337 + 1, k, 0, "cpu") for k in range(2)]  # TINY's eval_iters, batch_size and block_size, and the evals' seed
    num_bytes = sum(token_bytes[y].sum().item() for _, y in eval_batches)
    assert record["val_bpb"] == pytest.approx(record["val_loss"] * 2 * 4 * 32 / math.log(2) / num_bytes, rel=1e-5)
    assert 2 * 4 * 32 < num_bytes < 4 * 2 * 4 * 32  # a token of this BPE is 1 to 4 bytes on average


def copy_run(trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "out", ignore=shutil.ignore_patterns(".lock"))
    return tmp_path / "out"


def test_resume_goes_on_with_the_trained_bpe(trained_data_root, trained_run, tmp_path):
    out_dir = copy_run(trained_run, tmp_path)
    notes = train_here(trained_data_root, out_dir, "--dataset=shakespeare_bpe", "--init_from=resume", "--max_iters=4",
                       "--eval_interval=4").stderr
    assert f"the dataset's vocabulary: {describe(dataset_vocab(trained_data_root))} (vocab_size = 512)" in notes
    assert load_checkpoint(out_dir / "ckpt.pt")["iter_num"] == 4


@pytest.mark.slow  # a second dataset: prepare_text in a process
def test_resume_on_a_dataset_of_another_trained_bpe_of_the_same_size_is_one_line(trained_data_root, trained_run,
                                                                                 tmp_path):
    (tmp_path / "upper.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8").upper(), encoding="utf-8")
    run_script("data/prepare_text.py", "--input", tmp_path / "upper.txt", "--name", "shakespeare_bpe", "--tokenizer",
               "bpe", "--vocab_size", 512, f"--data_dir={tmp_path / 'data'}")
    other = load_meta(tmp_path / "data" / "shakespeare_bpe" / "meta.pkl")
    assert other["vocab_size"] == 512 and other != dataset_vocab(trained_data_root)
    out_dir = copy_run(trained_run, tmp_path)
    before = (out_dir / "ckpt.pt").read_bytes()
    error = run_in_process("train.py", *TINY, f"--out_dir={out_dir}", "--dataset=shakespeare_bpe",
                           "--init_from=resume", "--max_iters=6", cwd=tmp_path).error
    assert error == (f"dataset=shakespeare_bpe has another vocabulary ({describe(other)}) than the model from "
                     f"{out_dir / 'ckpt.pt'} learnt ({describe(dataset_vocab(trained_data_root))}): its token ids "
                     f"would mean other text; use a dataset of the model's vocabulary, or start a new run")
    assert (out_dir / "ckpt.pt").read_bytes() == before


def test_sample_py_uses_the_checkpoints_trained_bpe_from_any_directory(trained_data_root, trained_run, tmp_path):
    # no data/ here: the BPE comes from the checkpoint; a prompt of characters Shakespeare never wrote is bytes to it
    prompt = "ROMEO: 日本語 😀 e\u0301"
    proc = run_in_process("sample.py", "--device=cpu", f"--out_dir={trained_run}", f"--start={prompt}",
                          "--temperature=0", "--num_samples=1", "--max_new_tokens=20", cwd=tmp_path)
    assert "using the checkpoint's vocabulary: a BPE of 512 tokens trained on its text" in proc.stderr
    [sample] = samples(proc.stdout)
    tokenizer = Tokenizer(dataset_vocab(trained_data_root))
    model = model_from_checkpoint(load_checkpoint(trained_run / "ckpt.pt"), str(trained_run / "ckpt.pt")).eval()
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        for _ in range(20):  # greedy, as --temperature=0
            ids = torch.cat([ids, model(ids[:, -32:])[0][:, -1:].argmax(-1)], dim=1)  # the last block_size
    assert sample == tokenizer.decode(ids[0].tolist())
    assert sample.startswith(prompt)


def test_eval_hellaswag_scores_a_trained_bpe_model_with_its_own_tokenizer(trained_data_root, trained_run, tmp_path):
    (tmp_path / "hellaswag.jsonl").write_text("".join(json.dumps(e) + "\n" for e in HELLASWAG_EXAMPLES))
    proc = run_in_process("eval_hellaswag.py", "--init_from=resume", f"--out_dir={trained_run}",
                          f"--hellaswag_file={tmp_path / 'hellaswag.jsonl'}", "--device=cpu", cwd=tmp_path)
    model = model_from_checkpoint(load_checkpoint(trained_run / "ckpt.pt"), str(trained_run / "ckpt.pt")).eval()
    want = evaluate_hellaswag(model, HELLASWAG_EXAMPLES, "cpu", torch.no_grad(),
                              tokenizer=Tokenizer(dataset_vocab(trained_data_root)))
    assert f"HellaSwag on 4 examples: acc_norm {want['acc_norm']:.4f}" in proc.stdout


def test_train_py_scores_hellaswag_with_the_trained_bpe(trained_data_root, tmp_path):
    (tmp_path / "hellaswag.jsonl").write_text("".join(json.dumps(e) + "\n" for e in HELLASWAG_EXAMPLES))
    train_here(trained_data_root, tmp_path / "out", "--dataset=shakespeare_bpe", "--max_iters=1", "--eval_interval=1",
               "--hellaswag=True", f"--hellaswag_file={tmp_path / 'hellaswag.jsonl'}")
    records = [r for r in read_log(tmp_path / "out") if "val_loss" in r]
    assert [r["iter"] for r in records] == [0, 1] and all(0 <= r["hellaswag_acc_norm"] <= 1 for r in records)


def test_a_char_model_and_a_trained_bpe_model_report_bits_per_byte_of_the_same_text(char_run, trained_run):
    # Shakespeare is ASCII: a character is a byte, so a char model's bits per byte are its loss over ln 2
    char_eval = [r for r in read_log(char_run) if "val_bpb" in r][-1]
    assert char_eval["val_bpb"] == pytest.approx(char_eval["val_loss"] / math.log(2), rel=1e-6)
    bpe_eval = [r for r in read_log(trained_run) if "val_bpb" in r][-1]
    assert bpe_eval["val_loss"] > char_eval["val_loss"]  # per token: not comparable
    assert np.isfinite(bpe_eval["val_bpb"]) and bpe_eval["val_bpb"] < bpe_eval["val_loss"] / math.log(2)


def test_a_checkpoint_whose_trained_bpe_is_not_whole_is_one_line(trained_run, tmp_path):
    checkpoint = torch.load(trained_run / "ckpt.pt", weights_only=True)
    checkpoint["vocab"]["tokens"] = checkpoint["vocab"]["tokens"][:-1]  # a token lost
    (tmp_path / "out").mkdir()
    torch.save(checkpoint, tmp_path / "out" / "ckpt.pt")
    error = run_in_process("sample.py", "--device=cpu", f"--out_dir={tmp_path / 'out'}", cwd=tmp_path).error
    assert error == ("the vocabulary is a trained BPE that is not whole (the 256 bytes, then distinct merged tokens, "
                     "one fewer than vocab_size, GPT-2's split): its checkpoint or dataset is damaged")
