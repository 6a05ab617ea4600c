"""plot.py: log.jsonl in, loss.png out."""

import json

import matplotlib.image

from plot import BPB_CURVES, loss_curves, loss_figure, newest_run, read_log
from helpers import run_in_process

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def training_log(with_tokens=True):
    """What train.py writes: provenance, then a training record every log_interval and an eval every 4 iters."""
    tokens_per_iter = 12 * 1024 * 40
    records = [{"provenance": {"git_commit": "abc123", "torch": "2.13.0", "device": "cpu"}}]
    for it in range(9):
        tokens = {"tokens": it * tokens_per_iter} if with_tokens else {}
        if it % 4 == 0:
            records.append({"iter": it, "train_loss": 10.9 - 0.5 * it, "val_loss": 11.0 - 0.5 * it, **tokens})
        records.append({"iter": it, "loss": 10.8 - 0.5 * it, "lr": 6e-4, "dt_ms": 120.0, "mfu": 0.31, **tokens})
    return records


def test_plot_writes_a_png_with_an_iterations_and_a_tokens_panel(tmp_path):
    write_log(tmp_path / "log.jsonl", training_log())
    proc = run_in_process("plot.py", f"--out_dir={tmp_path}", cwd=tmp_path)
    png = tmp_path / "loss.png"
    assert f"wrote {png}" in proc.stdout
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(png).shape == (450, 1200, 4)  # two 6 x 4.5 inch panels at 100 dpi


def test_log_without_tokens_is_plotted_against_iterations_alone(tmp_path):
    write_log(tmp_path / "log.jsonl", training_log(with_tokens=False))
    assert run_in_process("plot.py", f"--out_dir={tmp_path}", cwd=tmp_path).error is None
    assert matplotlib.image.imread(tmp_path / "loss.png").shape == (450, 600, 4)


def test_curves_keep_the_latest_record_of_an_iteration_and_skip_a_half_written_line(tmp_path):
    log = tmp_path / "log.jsonl"
    # a run to iter 2, resumed from its checkpoint at iter 1, then a line being written
    write_log(log, [{"iter": 0, "loss": 5.0, "tokens": 0}, {"iter": 1, "loss": 4.0, "tokens": 10},
                    {"iter": 2, "loss": 3.5, "tokens": 20}, {"provenance": {}},
                    {"iter": 1, "train_loss": 3.9, "val_loss": 4.1, "tokens": 10},
                    {"iter": 2, "loss": 3.0, "tokens": 20}])
    with open(log, "a") as f:
        f.write('{"iter": 3, "lo')
    assert loss_curves(read_log(log)[0]) == {
        "train": [(0, 0, 5.0), (1, 10, 4.0), (2, 20, 3.0)],
        "train (eval)": [(1, 10, 3.9)],
        "val (eval)": [(1, 10, 4.1)],
    }


def x_axis(fig, panel=0):
    """The limits and the tick labels of a panel's x axis, as drawn."""
    ax = fig.axes[panel]
    fig.canvas.draw()
    return ax.get_xlim(), [label.get_text() for label in ax.get_xticklabels()]


def test_single_eval_at_iter_0_gets_an_axis_of_whole_iterations_around_it():
    # eval_only=True logs one eval at iter 0; matplotlib alone would draw an axis from -40 m to 40 m iterations
    fig = loss_figure({"train (eval)": [(0, 0, 10.9)], "val (eval)": [(0, 0, 11.0)]})
    assert x_axis(fig, panel=0) == ((-1.0, 1.0), ["\u22121", "0", "1"])
    assert x_axis(fig, panel=1) == ((-1.0, 1.0), ["\u22121", "0", "1"])  # tokens


def test_single_eval_at_a_later_iteration_spans_5_percent_either_side():
    fig = loss_figure({"val (eval)": [(2000, 983040000, 3.2)]})
    (left, right), _ = x_axis(fig, panel=0)
    assert (left, right) == (1900.0, 2100.0)
    (left, right), _ = x_axis(fig, panel=1)
    assert (left, right) == (983040000 * 0.95, 983040000 * 1.05)


def test_missing_log_says_to_run_train_first(tmp_path):
    error = run_in_process("plot.py", f"--out_dir={tmp_path}", cwd=tmp_path).error
    assert error == f"no log at {tmp_path / 'log.jsonl'}; run train.py first, with the same --out_dir"


def test_log_without_losses_is_an_error(tmp_path):
    write_log(tmp_path / "log.jsonl", [{"provenance": {"git_commit": None}}])
    error = run_in_process("plot.py", f"--out_dir={tmp_path}", cwd=tmp_path).error
    assert error.startswith(f"{tmp_path / 'log.jsonl'} has no losses yet")
    assert not (tmp_path / "loss.png").exists()


def test_lines_that_are_not_records_are_skipped_and_counted(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, training_log())
    with open(log, "ab") as f:
        f.write(b'{"iter": 9, "loss": \xff\xfe}\n')  # bytes that are not UTF-8
        f.write(b'{"iter": "7", "loss": 2.0}\n{"iter": 8, "loss": "low"}\n[1, 2]\n')  # records of the wrong types
        f.write(b'{"iter": 9, "lo' + b"\0" * 4096)  # a torn line, and a power cut's NUL bytes
    records, skipped = read_log(log)
    assert skipped == 3  # the bytes, the list, and the torn line with its NULs
    assert max(it for it, _, _ in loss_curves(records)["train"]) == 8  # "7" and "low" are not plotted
    proc = run_in_process("plot.py", f"--out_dir={tmp_path}", cwd=tmp_path)
    assert proc.error is None and (tmp_path / "loss.png").exists()


def test_the_picture_is_of_the_newest_run_and_its_resumes(tmp_path):
    def start(resumed_from):
        return {"provenance": {"config": {"init_from": "scratch"}}, "resumed_from": resumed_from}
    records = [start(None), {"iter": 0, "loss": 9.0}, {"iter": 1, "loss": 8.0},  # an earlier run
               start(None), {"iter": 0, "loss": 5.0}, {"iter": 1, "loss": 4.0},  # the newest, stopped at 2
               start(2), {"iter": 2, "loss": 3.0}]  # and resumed
    assert loss_curves(newest_run(records)) == {"train": [(0, None, 5.0), (1, None, 4.0), (2, None, 3.0)]}
    # a log written before resumed_from: the config says whether a run resumed
    old = [{"provenance": {"config": {"init_from": "scratch"}}}, {"iter": 0, "loss": 9.0},
           {"provenance": {"config": {"init_from": "scratch"}}}, {"iter": 0, "loss": 5.0},
           {"provenance": {"config": {"init_from": "resume"}}}, {"iter": 1, "loss": 4.0}]
    assert loss_curves(newest_run(old)) == {"train": [(0, None, 5.0), (1, None, 4.0)]}


def test_bpb_plots_the_evaluations_in_bits_per_byte_to_bpb_png(tmp_path):
    records = training_log()
    for record in records:
        if "val_loss" in record:
            record.update(train_bpb=record["train_loss"] / 3, val_bpb=record["val_loss"] / 3)
    write_log(tmp_path / "log.jsonl", records)
    assert loss_curves(records, BPB_CURVES) == {
        "train (eval)": [(it, it * 12 * 1024 * 40, (10.9 - 0.5 * it) / 3) for it in (0, 4, 8)],
        "val (eval)": [(it, it * 12 * 1024 * 40, (11.0 - 0.5 * it) / 3) for it in (0, 4, 8)]}
    proc = run_in_process("plot.py", f"--out_dir={tmp_path}", "--bpb=True", cwd=tmp_path)
    assert f"wrote {tmp_path / 'bpb.png'}" in proc.stdout and not (tmp_path / "loss.png").exists()
    assert matplotlib.image.imread(tmp_path / "bpb.png").shape == (450, 1200, 4)


def test_bpb_of_a_log_without_bits_per_byte_is_an_error(tmp_path):
    write_log(tmp_path / "log.jsonl", training_log())  # as train.py wrote before it measured bits per byte
    error = run_in_process("plot.py", f"--out_dir={tmp_path}", "--bpb=True", cwd=tmp_path).error
    assert error.startswith(f"{tmp_path / 'log.jsonl'} has no losses in bits per byte yet")
