"""
Plots a run's losses without wandb: reads out_dir/log.jsonl (train.py appends to it) and writes out_dir/loss.png,
train and val loss against iterations and, when the log has them, against tokens seen. The log holds every run in
out_dir; the picture is of the newest (from its start, its resumes included).
$ python plot.py --out_dir=out
$ python plot.py --out_dir=out --bpb=True    # out/bpb.png: the evaluations' losses in bits per byte of text
It can run while training goes on. Losses in nats per token depend on the vocabulary; bits per byte of text do not:
they compare a character, a GPT-2 and a trained-BPE run on the same text.
stdout holds the path of the picture; notes go to stderr.
"""

import json
import os
import sys

from matplotlib.figure import Figure  # not pyplot: draws to a file, no display or global state
from matplotlib.ticker import EngFormatter, MaxNLocator

import errors
from configurator import configure
from errors import UserError
from fileio import write_atomically

# (label, key in log.jsonl): the training loss every log_interval, then the estimates of each evaluation
CURVES = [('train', 'loss'), ('train (eval)', 'train_loss'), ('val (eval)', 'val_loss')]
BPB_CURVES = [('train (eval)', 'train_bpb'), ('val (eval)', 'val_bpb')]  # the evaluations', in bits per byte


def read_log(path):
    """(records, skipped): the records of a log.jsonl, one dict per line, and the number of lines that are not one
    (the last may be half written while train.py runs; a power cut leaves a torn line or NUL bytes)."""
    if not os.path.isfile(path):
        raise UserError(f"no log at {path}; run train.py first, with the same --out_dir")
    records, skipped = [], 0
    with open(path, 'rb') as f:
        for line in f:
            try:
                record = json.loads(line)  # bytes: UTF-8, and bytes that are not are a line that is not a record
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif line.strip(b'\0 \t\r\n'):
                skipped += 1
    return records, skipped


def newest_run(records):
    """The records of the newest run: from the last provenance record of a run that did not resume (a run from
    scratch, or from GPT-2's weights), its resumes included. Logs of before 'resumed_from' say it in the config."""
    def starts_a_run(record):
        provenance = record.get('provenance')
        if not isinstance(provenance, dict):
            return False
        if 'resumed_from' in record:
            return record['resumed_from'] is None
        config = provenance.get('config')
        return not (isinstance(config, dict) and config.get('init_from') == 'resume')
    starts = [i for i, record in enumerate(records) if starts_a_run(record)]
    return records[starts[-1]:] if starts else records


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def loss_curves(records, kinds=CURVES):
    """{label: [(iter, tokens or None, loss), ...] by iter} for each curve of kinds (CURVES or BPB_CURVES) the records
    have. A resumed run logs the iterations after its checkpoint again: the latest record of an iteration wins."""
    curves = {label: {} for label, _ in kinds}
    for record in records:
        if type(record.get('iter')) is not int:
            continue  # e.g. the provenance record, or one of the wrong type
        tokens = record.get('tokens') if is_number(record.get('tokens')) else None
        for label, key in kinds:
            if is_number(record.get(key)):
                curves[label][record['iter']] = (tokens, record[key])
    return {label: [(it, tokens, loss) for it, (tokens, loss) in sorted(points.items())]
            for label, points in curves.items() if points}


def loss_figure(curves, ylabel='loss'):
    """One panel against iterations and, if any record has tokens, one against tokens, sharing the loss axis."""
    xs = [('iteration', 0)]
    if any(tokens is not None for points in curves.values() for _, tokens, _ in points):
        xs.append(('tokens', 1))
    fig = Figure(figsize=(6 * len(xs), 4.5))
    axes = fig.subplots(1, len(xs), sharey=True, squeeze=False)
    for ax, (xlabel, column) in zip(axes[0], xs):
        panel_xs = []
        for label, points in curves.items():
            xy = [(point[column], point[2]) for point in points if point[column] is not None]
            if not xy:
                continue
            style = dict(lw=1, alpha=0.6) if label == 'train' else dict(marker='o', ms=3)  # noisy: one batch
            ax.plot(*zip(*xy), label=label, **style)
            panel_xs += [x for x, _ in xy]
        if min(panel_xs) == max(panel_xs):  # a single iteration: matplotlib would spread it over milli-iterations
            pad = max(1, 0.05 * panel_xs[0])
            ax.set_xlim(panel_xs[0] - pad, panel_xs[0] + pad)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations and tokens are whole numbers
        ax.xaxis.set_major_formatter(EngFormatter())  # 2.5G rather than an offset like 1e9
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


if __name__ == '__main__':
    errors.install()
    out_dir: str = 'out'  # the run's directory: reads log.jsonl there, writes loss.png (or bpb.png) there
    bpb: bool = False  # plot the evaluations' losses in bits per byte of text (bpb.png), comparable across vocabularies
    configure(globals(), sys.argv[1:])
    out = errors.result_stream()  # the picture's path; everything else goes to stderr

    log_path = os.path.join(out_dir, 'log.jsonl')
    records, skipped = read_log(log_path)
    if skipped:
        print(f"{log_path}: skipped {skipped} line(s) that are not records (torn by a run cut off mid-line, or not "
              f"written by train.py)")
    curves = loss_curves(newest_run(records), BPB_CURVES if bpb else CURVES)
    if not curves:
        raise UserError(f"{log_path} has no {'losses in bits per byte' if bpb else 'losses'} yet; plot again once "
                        f"train.py has logged some")
    png_path = os.path.join(out_dir, 'bpb.png' if bpb else 'loss.png')
    figure = loss_figure(curves, 'bits per byte of text' if bpb else 'loss')
    # under a temp name, renamed once whole: a full disk or a kill leaves the earlier picture as it was
    write_atomically(png_path, lambda f: figure.savefig(f, format='png', dpi=100), "plot into another --out_dir")
    print(f"wrote {png_path}", file=out)
