"""
Plots a run's losses without wandb: reads out_dir/log.jsonl (train.py appends to it) and writes out_dir/loss.png,
train and val loss against iterations and, when the log has them, against tokens seen.
$ python plot.py --out_dir=out
It can run while training goes on.
"""

import json
import os
import sys

from matplotlib.figure import Figure  # not pyplot: draws to a file, no display or global state
from matplotlib.ticker import EngFormatter, MaxNLocator

import errors
from configurator import configure
from errors import UserError, writing

# (label, key in log.jsonl): the training loss every log_interval, then the estimates of each evaluation
CURVES = [('train', 'loss'), ('train (eval)', 'train_loss'), ('val (eval)', 'val_loss')]


def read_log(path):
    """The records of a log.jsonl, one dict per line. A line that is not JSON is skipped: the last one may be
    half written while train.py runs."""
    if not os.path.isfile(path):
        raise UserError(f"no log at {path}; run train.py first, with the same --out_dir")
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def loss_curves(records):
    """{label: [(iter, tokens or None, loss), ...] by iter} for each curve the records have. A resumed run logs
    the iterations after its checkpoint again: the latest record of an iteration wins."""
    curves = {label: {} for label, _ in CURVES}
    for record in records:
        if not isinstance(record, dict) or 'iter' not in record:
            continue  # e.g. the provenance record
        for label, key in CURVES:
            if key in record:
                curves[label][record['iter']] = (record.get('tokens'), record[key])
    return {label: [(it, tokens, loss) for it, (tokens, loss) in sorted(points.items())]
            for label, points in curves.items() if points}


def loss_figure(curves):
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
    axes[0][0].set_ylabel('loss')
    axes[0][0].legend()
    fig.tight_layout()
    return fig


if __name__ == '__main__':
    errors.install()
    out_dir: str = 'out'  # the run's directory: reads log.jsonl there, writes loss.png there
    configure(globals(), sys.argv[1:])

    log_path = os.path.join(out_dir, 'log.jsonl')
    curves = loss_curves(read_log(log_path))
    if not curves:
        raise UserError(f"{log_path} has no losses yet; plot again once train.py has logged some")
    png_path = os.path.join(out_dir, 'loss.png')
    with writing(png_path, "plot into another --out_dir"):
        loss_figure(curves).savefig(png_path, dpi=100)
    print(f"wrote {png_path}")
