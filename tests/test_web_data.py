"""data/fineweb and data/openwebtext prepare.py (corpus.prepare_parquet): parquet files, local or from a Hub
served over local HTTP, to train.bin/val.bin; resumable after kill -9, independent of --num_proc."""
import hashlib
import http.server
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tiktoken
import tokenizer
from errors import UserError
from helpers import REPO, SHAKESPEARE, assert_user_error, children, kill_a_worker, listing


FINEWEB = REPO / "data" / "fineweb" / "prepare.py"
SHIMS = REPO / "tests" / "shims"  # packages that stand in for gigatoken, first on PYTHONPATH
OPENWEBTEXT = REPO / "data" / "openwebtext" / "prepare.py"
EOT = 50256
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused

DOCS = ["First document.\nTwo lines, a café ☕ and 😀.", "", "Has <|endoftext|> written in it, as plain text.",
        "  leading spaces and trailing newlines\n\n", "a\n\nb", "Sixth.", "Seventh: the last one."]


def write_parquet(path, texts, column="text", row_group_size=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(texts))), column: texts}), path, row_group_size=row_group_size)
    return path


def gpt2_ids(texts):
    enc = tiktoken.get_encoding("gpt2")
    return [t for text in texts for t in enc.encode_ordinary(text) + [EOT]]


def tokens(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def run(script, out_dir, *args, env=None, preexec_fn=None):
    """The script on out_dir with args; with tiktoken (quicker to start) unless args name a --bpe or 'auto'."""
    if "--bpe" not in args:
        args += ("--bpe", "tiktoken")
    elif "auto" in args:
        args = tuple(a for a in args if a != "--bpe" and a != "auto")  # the default
    return subprocess.run([sys.executable, str(script), "--out_dir", str(out_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
                          preexec_fn=preexec_fn)


def prepare(script, out_dir, *args, env=None):
    result = run(script, out_dir, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result


def outputs(out_dir):
    return {name: (out_dir / name).read_bytes() for name in ("train.bin", "val.bin")}


@pytest.fixture
def shards(tmp_path):
    """DOCS in two parquet files: documents 0-3 and 4-6."""
    write_parquet(tmp_path / "src" / "a.parquet", DOCS[:4])
    write_parquet(tmp_path / "src" / "b.parquet", DOCS[4:])
    return tmp_path / "src"


def shakespeare_shards(root, num_files, docs_per_file, doc_chars=1000):
    text = SHAKESPEARE.read_text(encoding="utf-8")
    docs = [text[i:i + doc_chars] for i in range(0, len(text), doc_chars)]
    for k in range(num_files):
        write_parquet(root / f"{k:03d}.parquet", [docs[(k * docs_per_file + j) % len(docs)] for j in range(docs_per_file)],
                      row_group_size=100)
    return root


# ---------------------------------------------------------------------------- results

def test_every_document_is_gpt2_ids_then_endoftext_and_every_nth_goes_to_val(tmp_path, shards):
    result = prepare(FINEWEB, tmp_path / "out", "--data_files", shards / "*.parquet", "--val_every", 3, "--bpe", "auto")
    assert f"tokenizing with {'gigatoken' if importlib.util.find_spec('gigatoken') else 'tiktoken'}" in result.stderr
    out = result.stdout
    val_docs = [d for i, d in enumerate(DOCS) if i % 3 == 0]  # documents 0, 3, 6, counted across files
    train_docs = [d for i, d in enumerate(DOCS) if i % 3 != 0]
    assert tokens(tmp_path / "out" / "val.bin") == gpt2_ids(val_docs)
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids(train_docs)
    assert f"train has {len(gpt2_ids(train_docs)):,} tokens" in out
    assert "7 documents (3 in val) from 2 source files" in out
    assert listing(tmp_path / "out") == ["train.bin", "val.bin"]


def test_a_directory_of_data_files_is_read_in_sorted_order(tmp_path, shards):
    prepare(OPENWEBTEXT, tmp_path / "out", "--data_files", shards)
    assert tokens(tmp_path / "out" / "val.bin") == gpt2_ids([DOCS[0]])  # every 2000th: only document 0
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids(DOCS[1:])


def test_text_column_names_the_column(tmp_path):
    write_parquet(tmp_path / "src" / "a.parquet", DOCS, column="content")
    prepare(FINEWEB, tmp_path / "out", "--data_files", tmp_path / "src", "--text_column", "content")
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids(DOCS[1:])


@pytest.mark.slow
def test_output_does_not_depend_on_num_proc_nor_on_the_bpe(tmp_path):
    src = shakespeare_shards(tmp_path / "src", num_files=3, docs_per_file=700)
    for num_proc, bpe in ((1, "gigatoken"), (2, "gigatoken"), (2, "tiktoken")):
        out = prepare(FINEWEB, tmp_path / f"{num_proc}-{bpe}", "--data_files", src, "--num_proc", num_proc,
                      "--val_every", 7, "--bpe", bpe).stderr
        assert f"tokenizing with {bpe}" in out
    assert outputs(tmp_path / "1-gigatoken") == outputs(tmp_path / "2-gigatoken") == outputs(tmp_path / "2-tiktoken")
    assert len(tokens(tmp_path / "2-tiktoken" / "val.bin")) > 0


def test_a_large_row_group_is_cut_and_small_ones_joined_into_ranges_without_changing_the_output(tmp_path):
    from corpus import TASK_BYTES, row_ranges
    text = SHAKESPEARE.read_text(encoding="utf-8")
    large = [text[i:i + 2000] for i in range(0, len(text) - 2000, 1000)]  # 2.2 MB of distinct texts, one row group
    path = tmp_path / "src" / "a.parquet"
    path.parent.mkdir()
    with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as writer:
        writer.write_table(pa.table({"text": large}), row_group_size=len(large))
        for k in range(0, len(DOCS), 2):
            writer.write_table(pa.table({"text": DOCS[k:k + 2]}))  # a row group of two documents, four times
    pieces = -(-pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size // TASK_BYTES)
    cuts = [len(large) * k // pieces for k in range(pieces)]
    assert pieces == 3
    # the large group in 3 pieces; the small groups joined to its last piece
    assert row_ranges(pq.ParquetFile(path), "text") == list(zip(cuts, cuts[1:])) + [(cuts[-1], len(large) + len(DOCS))]
    prepare(FINEWEB, tmp_path / "out", "--data_files", path, "--num_proc", 2, "--val_every", 10**9)
    assert tokens(tmp_path / "out" / "val.bin") == gpt2_ids(large[:1])
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids(large[1:] + DOCS)


# ---------------------------------------------------------------------------- resuming

def wait_until(condition, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("bpe, files_done", [
    ("tiktoken", 1),  # killed in the second file: the first is kept, the second's tokens so far are dropped
    ("gigatoken", 0),  # the first file, where the guard checks every document (at tiktoken's pace: time to kill it)
])
def test_kill_9_in_the_middle_of_a_file_then_the_same_command_ends_byte_identical(tmp_path, bpe, files_done):
    src = shakespeare_shards(tmp_path / "src", num_files=3, docs_per_file=2000)  # ~2 MB of text: 2 ranges a file
    args = ["--data_files", src, "--num_proc", 1, "--val_every", 50, "--bpe", bpe]
    prepare(FINEWEB, tmp_path / "whole", *args)

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(FINEWEB), "--out_dir", str(out), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "prepare_progress.json"

    def file_under_way():  # files_done recorded done, and tokens of the next one already in train.bin.partial
        try:
            state = json.loads(progress.read_text())
            return (state["done"] == files_done and
                    (out / "train.bin.partial").stat().st_size > 2 * state["tokens"]["train"])
        except (OSError, ValueError):
            return False
    wait_until(lambda: file_under_way() or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert not (out / "train.bin").exists() and not (out / "val.bin").exists()

    result = prepare(FINEWEB, out, *args)
    assert "going on from" in result.stderr and f"{files_done} of 3 source files done" in result.stderr
    assert outputs(out) == outputs(tmp_path / "whole")
    assert listing(out) == ["train.bin", "val.bin"]


@pytest.mark.slow
def test_a_worker_killed_by_kill_9_ends_the_run_in_seconds_and_the_same_command_goes_on(tmp_path):
    src = shakespeare_shards(tmp_path / "src", num_files=3, docs_per_file=3000)  # 9 tasks of ~1 MB
    args = ["--data_files", src, "--num_proc", 2, "--val_every", 50, "--bpe", "tiktoken"]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(FINEWEB), "--out_dir", str(out), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: proc.poll() is not None or (len(children(proc.pid)) == 2 and
                                                   (out / "train.bin.partial").exists() and
                                                   (out / "train.bin.partial").stat().st_size > 0))
    stderr = kill_a_worker(proc)
    assert proc.returncode == 1 and stderr.endswith("\nerror: a tokenizer worker process died (killed by the "
                                                    "out-of-memory killer, or by kill -9?); run the same command "
                                                    "again: it goes on from the last finished source file\n")
    assert "going on from" in prepare(FINEWEB, out, *args).stderr
    prepare(FINEWEB, tmp_path / "whole", *args)
    assert outputs(out) == outputs(tmp_path / "whole")


def test_an_unfinished_run_with_other_options_is_not_mixed_in(tmp_path):
    from corpus import load_progress
    (tmp_path / "prepare_progress.json").write_text(json.dumps({"job": {"data_files": "elsewhere"}}))
    with pytest.raises(UserError, match="records an unfinished run with other options"):
        load_progress(tmp_path / "prepare_progress.json", {"data_files": "here"})


# ---------------------------------------------------------------------------- the Hub, served locally

def commit_of(repo, branch):
    return hashlib.sha1(f"{repo}@{branch}".encode()).hexdigest()


@contextmanager
def fake_hub(repos, refuse=None):
    """A Hugging Face Hub on localhost with the endpoints huggingface_hub calls to list and download a dataset's
    files. repos: {repo_id: {branch: {path: bytes}}}. refuse: an HTTP status to answer everything with.
    Yields (HF_ENDPOINT, the list of paths requested)."""
    requested = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, body, headers):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_json(self, obj, status=200, error_code=None):
            self.send(status, json.dumps(obj).encode(), {"Content-Type": "application/json",
                                                         **({"X-Error-Code": error_code} if error_code else {})})

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            # split before unquoting: a revision such as refs/convert/parquet comes as one quoted segment
            parts = [urllib.parse.unquote(p) for p in urllib.parse.urlparse(self.path).path.split("/")[1:]]
            requested.append("/".join(parts))
            if refuse:
                return self.send_json({"error": "refused"}, refuse)
            api = parts[0] == "api"  # api/datasets/REPO/{revision,tree}/REV/..., datasets/REPO/resolve/REV/PATH
            parts = parts[api:]
            repo = "/".join(parts[1:3])
            if len(parts) < 5 or parts[0] != "datasets" or repo not in repos:
                return self.send_json({"error": "Repository not found"}, 404, "RepoNotFound")
            branches = {**{b: b for b in repos[repo]}, **{commit_of(repo, b): b for b in repos[repo]}}
            kind, rev, path = parts[3], parts[4], "/".join(parts[5:])
            if rev not in branches:
                return self.send_json({"error": "Revision not found"}, 404, "RevisionNotFound")
            files, sha = repos[repo][branches[rev]], commit_of(repo, branches[rev])
            if api and kind == "revision":
                return self.send_json({"id": repo, "sha": sha, "private": False})
            if api and kind == "tree":
                return self.send_json([{"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data),
                                        "path": p} for p, data in sorted(files.items()) if p.startswith(path)])
            if not api and kind == "resolve" and path in files:
                etag = hashlib.sha1(files[path]).hexdigest()
                return self.send(200, files[path], {"X-Repo-Commit": sha, "ETag": f'"{etag}"'})
            return self.send_json({"error": "Entry not found"}, 404, "EntryNotFound")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def hub_env(tmp_path, endpoint):
    return {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "0"}


def test_fineweb_downloads_only_its_subset_one_file_at_a_time(tmp_path, shards):
    files = {"sample/10BT/000_00000.parquet": (shards / "a.parquet").read_bytes(),
             "sample/10BT/001_00000.parquet": (shards / "b.parquet").read_bytes(),
             "sample/100BT/000_00000.parquet": b"not this subset", "data/CC-MAIN-2024-10/x.parquet": b"nor this"}
    with fake_hub({"HuggingFaceFW/fineweb-edu": {"main": files}}) as (endpoint, requested):
        prepare(FINEWEB, tmp_path / "out", "--val_every", 3, env=hub_env(tmp_path, endpoint))
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids([d for i, d in enumerate(DOCS) if i % 3])
    downloaded = [p.split("/resolve/")[1].split("/", 1)[1] for p in requested if "/resolve/" in p]
    assert sorted(set(downloaded)) == ["sample/10BT/000_00000.parquet", "sample/10BT/001_00000.parquet"]
    assert listing(tmp_path / "out") == ["train.bin", "val.bin"]  # downloads deleted
    assert not (tmp_path / "hf_home" / "hub").exists()  # nothing in the Hugging Face cache


def test_openwebtext_reads_the_parquet_the_hub_hosts_without_a_script(tmp_path, shards):
    files = {"data/train-00000-of-00002.parquet": (shards / "a.parquet").read_bytes(),
             "data/train-00001-of-00002.parquet": (shards / "b.parquet").read_bytes(), "README.md": b"card"}
    with fake_hub({"Skylion007/openwebtext": {"main": files}}) as (endpoint, _):
        prepare(OPENWEBTEXT, tmp_path / "out", env=hub_env(tmp_path, endpoint))
    assert tokens(tmp_path / "out" / "train.bin") + tokens(tmp_path / "out" / "val.bin") == gpt2_ids(DOCS[1:] + DOCS[:1])


def test_a_dataset_still_shipping_a_script_is_read_from_the_hubs_parquet_conversion(tmp_path, shards):
    repo = {"main": {"openwebtext.py": b"# a loading script", "subsets/urlsplit_00.tar": b"..."},
            "refs/convert/parquet": {"plain_text/train/0000.parquet": (shards / "a.parquet").read_bytes()}}
    with fake_hub({"Skylion007/openwebtext": repo}) as (endpoint, _):
        out = prepare(OPENWEBTEXT, tmp_path / "out", env=hub_env(tmp_path, endpoint)).stderr
    assert "using the Hub's conversion at refs/convert/parquet" in out
    assert tokens(tmp_path / "out" / "train.bin") == gpt2_ids(DOCS[1:4])


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("script", [FINEWEB, pytest.param(OPENWEBTEXT, marks=pytest.mark.slow)])
def test_no_network_names_data_files_as_the_offline_way(tmp_path, script):
    result = run(script, tmp_path / "out", env=hub_env(tmp_path, UNREACHABLE))
    assert_user_error(result, "pass --data_files 'DIR/*.parquet'")
    assert not (tmp_path / "out" / "train.bin").exists() and not (tmp_path / "out" / "val.bin").exists()


@pytest.mark.parametrize("status", [401, pytest.param(404, marks=pytest.mark.slow)])
def test_a_hub_refusal_names_data_files(tmp_path, status):
    with fake_hub({}, refuse=status) as (endpoint, _):
        result = run(FINEWEB, tmp_path / "out", env=hub_env(tmp_path, endpoint))
    assert_user_error(result, "cannot list HuggingFaceFW/fineweb-edu on the Hub")
    assert "--data_files" in result.stderr


def test_a_bad_subset_lists_the_valid_ones(tmp_path):
    result = run(FINEWEB, tmp_path / "out", "--subset", "sample-1BT")
    assert_user_error(result, "unknown --subset sample-1BT; choose one of sample-10BT, sample-100BT, sample-350BT")
    assert not (tmp_path / "out").exists()


def test_a_parquet_file_without_the_text_column_names_text_column(tmp_path):
    from corpus import open_parquet
    path = write_parquet(tmp_path / "a.parquet", DOCS, column="content")
    with pytest.raises(UserError, match=r"has no column 'text' \(it has id, content\); name the text column with "
                                        r"--text_column"):
        open_parquet(path, "text")


def test_no_data_files_match(tmp_path):
    from corpus import find_files
    with pytest.raises(UserError, match="no files match --data_files"):
        find_files(str(tmp_path / "*.parquet"), ".parquet", "--data_files")
    with pytest.raises(UserError, match=r"no \.parquet files in .* for other files pass a quoted glob"):
        find_files(str(tmp_path), ".parquet", "--data_files")


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_the_same_command_then_finishes(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past 200 kB (EFBIG), as a full disk refuses them (ENOSPC)
    src = shakespeare_shards(tmp_path / "src", num_files=4, docs_per_file=300)
    args = ["--data_files", src, "--val_every", 10]
    prepare(FINEWEB, tmp_path / "whole", *args)
    assert (tmp_path / "whole" / "train.bin").stat().st_size > 400_000
    out = tmp_path / "out"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    result = run(FINEWEB, out, *args, preexec_fn=limit_file_size)
    assert_user_error(result, f"cannot write {out}: a file-size limit is reached (File too large); free some space and run "
                                  f"the same command again: it goes on from the last finished source file")
    assert not (out / "train.bin").exists()
    prepare(FINEWEB, out, *args)
    assert outputs(out) == outputs(tmp_path / "whole")


# ---------------------------------------------------------------------------- the BPE backends

def test_without_gigatoken_auto_is_tiktoken_and_asking_for_it_is_one_line(tmp_path, shards):
    env = {"PYTHONPATH": str(SHIMS / "no_gigatoken")}  # `import gigatoken` fails, as where it is not installed
    out = prepare(FINEWEB, tmp_path / "out", "--data_files", shards, "--bpe", "auto", env=env).stderr
    assert "tokenizing with tiktoken" in out
    assert tokens(tmp_path / "out" / "train.bin") + tokens(tmp_path / "out" / "val.bin") == gpt2_ids(DOCS[1:] + DOCS[:1])
    result = run(FINEWEB, tmp_path / "asked", "--data_files", shards, "--bpe", "gigatoken", env=env)
    assert_user_error(result, "--bpe gigatoken: it is not installed (No module named 'gigatoken'); "
                                  "pip install gigatoken==0.10.0, or use --bpe tiktoken")
    assert not (tmp_path / "asked").exists()


def planted(tmp_path, source, row, rows):
    """Two parquet files of rows short documents each; the document at row of file number source says 'PLANTED',
    which the wrong gigatoken (tests/shims/wrong_gigatoken) encodes with one token changed."""
    docs = [[f"Document {k} of file {i}." for k in range(rows)] for i in range(2)]
    docs[source][row] = "A PLANTED document."
    return [write_parquet(tmp_path / "src" / f"{i}.parquet", texts, row_group_size=rows) for i, texts in enumerate(docs)]


@pytest.mark.parametrize("where", ["the first file, whose every document is checked", "a sampled document"])
def test_the_guard_stops_a_wrong_bpe_in_one_line_and_nothing_wrong_is_kept(tmp_path, where):
    from tokenizer import guarded
    rows = 3000
    source, row = (0, 5) if where.startswith("the first") else (1, int(np.flatnonzero(guarded(1, 0, rows))[0]))
    files = planted(tmp_path, source, row, rows)
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(SHIMS / "wrong_gigatoken")}
    result = run(FINEWEB, out, "--data_files", tmp_path / "src", "--bpe", "gigatoken", env=env)
    assert_user_error(result, f"gigatoken's ids differ from tiktoken's in row {row} of {files[source]} (at token 0 "
                                  f"of 6): gigatoken cannot be trusted on this data; its output so far is deleted: "
                                  f"run the same command with --bpe tiktoken")
    assert listing(out) == []  # no train.bin, no partial outputs nor progress to go on from
    prepare(FINEWEB, out, "--data_files", tmp_path / "src", "--bpe", "tiktoken", env=env)  # as the line says
    texts = [text for f in files for text in pq.read_table(f).column("text").to_pylist()]
    assert tokens(out / "val.bin") == gpt2_ids(texts[::1000])


# ---------------------------------------------------------------------------- a BPE trained on the documents

def trained_ids(vocab, texts):
    enc = tokenizer.bpe_encoding(vocab)
    return [t for text in texts for t in enc.encode_ordinary(text) + [vocab["vocab_size"] - 1]]


@pytest.mark.slow
def test_bpe_is_trained_on_the_first_megabyte_of_documents_and_moves_in_as_meta_pkl(tmp_path):
    src = shakespeare_shards(tmp_path / "src", num_files=3, docs_per_file=500)  # 1.5 MB in documents of 1,000
    out = prepare(FINEWEB, tmp_path / "out", "--data_files", src, "--val_every", 7, "--tokenizer", "bpe",
                  "--vocab_size", 1000, "--tokenizer_mb", 1).stderr
    assert "trained it on 1.0 MB (1,000 documents)" in out
    docs = [t for f in sorted(src.iterdir()) for t in pq.read_table(f).column("text").to_pylist()]
    vocab = tokenizer.load_meta(tmp_path / "out" / "meta.pkl")
    assert vocab == tokenizer.train_bpe(docs[:1000], 1000, 2)  # the same text gives the same BPE, byte for byte
    assert tokens(tmp_path / "out" / "val.bin") == trained_ids(vocab, docs[::7])
    assert tokens(tmp_path / "out" / "train.bin") == trained_ids(vocab, [d for i, d in enumerate(docs) if i % 7])
    assert listing(tmp_path / "out") == ["meta.pkl", "train.bin", "val.bin"]


@pytest.mark.slow
def test_a_gpt2_run_removes_the_meta_pkl_of_an_earlier_bpe_run(tmp_path):
    src = shakespeare_shards(tmp_path / "src", num_files=1, docs_per_file=300)
    prepare(FINEWEB, tmp_path / "out", "--data_files", src, "--tokenizer", "bpe", "--vocab_size", 400)
    prepare(FINEWEB, tmp_path / "out", "--data_files", src)
    assert listing(tmp_path / "out") == ["train.bin", "val.bin"]


def test_characters_are_prepare_texts_not_the_web_prepares(tmp_path, shards):
    result = run(FINEWEB, tmp_path / "out", "--data_files", shards, "--tokenizer", "char")
    assert_user_error(result, "--tokenizer char is data/prepare_text.py's; the web datasets take gpt2 or bpe")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_kill_9_after_training_the_bpe_then_the_same_command_goes_on_with_it(tmp_path):
    src = shakespeare_shards(tmp_path / "src", num_files=3, docs_per_file=2000)
    args = ["--data_files", src, "--num_proc", 1, "--val_every", 50, "--bpe", "tiktoken", "--tokenizer", "bpe",
            "--vocab_size", 1000]
    prepare(FINEWEB, tmp_path / "whole", *args)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(FINEWEB), "--out_dir", str(out), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def first_file_done():
        try:
            return json.loads((out / "prepare_progress.json").read_text())["done"] >= 1
        except (OSError, ValueError):
            return False
    wait_until(lambda: first_file_done() or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert (out / "meta.pkl.partial").exists() and not (out / "meta.pkl").exists()
    result = prepare(FINEWEB, out, *args)
    assert "going on from" in result.stderr and "training a BPE" not in result.stderr
    assert outputs(out) == outputs(tmp_path / "whole")
    assert (out / "meta.pkl").read_bytes() == (tmp_path / "whole" / "meta.pkl").read_bytes()
