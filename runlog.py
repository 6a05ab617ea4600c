"""What a training run tells: its log on stdout, for people and for grep (nanoGPT's iter and step lines, how far the
run is, a line after HEARTBEAT seconds of silence, a summary at its end), log.jsonl, the history of every run in its
out_dir (never truncated), and wandb if asked for. Only the master process writes; the others keep the same clock."""

import json
import os
import shlex
import time

from checkpoint import CKPT, LAST
from errors import UserError, first_line, writing
from fileio import open_log
from hardware import duration

HEARTBEAT = 20  # seconds
# log.jsonl's keys, and nanoGPT's names for them in wandb
WANDB_KEYS = {'iter': 'iter', 'loss': 'train/iter_loss', 'train_loss': 'train/loss', 'val_loss': 'val/loss',
              'val_bpb': 'val/bpb', 'lr': 'lr', 'mfu': 'mfu', 'dt_ms': 'ms_per_iter', 'tokens': 'tokens',
              'hellaswag_acc_norm': 'hellaswag/acc_norm'}


class RunLog:

    def __init__(self, out, master, out_dir):
        self.out, self.master, self.out_dir = out, master, out_dir
        self.last_said = time.time()
        self.path, self.file = os.path.join(out_dir, 'log.jsonl'), None
        self.wandb = None

    def say(self, line):
        if self.master:
            print(line, file=self.out, flush=True)
        self.last_said = time.time()

    def still_working(self, line):
        """For a long evaluation or iteration: line(), when nothing was said for HEARTBEAT seconds."""
        if time.time() - self.last_said > HEARTBEAT:
            self.say(line())

    def open(self, kept):
        """Opens log.jsonl to append to (master only), repairing a tail a killed run tore, and says so."""
        with writing(self.path, kept):
            self.file, repaired = open_log(self.path)
        if repaired:
            print(f"{self.path}: {repaired}")

    def evaluation(self, iter_num, losses, hellaswag, tokens, kept):
        """The step lines of an evaluation and its record. losses: estimate_loss's (bits per byte None where the
        vocabulary does not know its tokens' bytes); hellaswag: its result, or None."""
        bpb = losses['val_bpb'] is not None
        self.say(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                 + (f", val bpb {losses['val_bpb']:.4f}" if bpb else ""))
        record = {'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
                  **({'train_bpb': losses['train_bpb'], 'val_bpb': losses['val_bpb']} if bpb else {}),
                  'tokens': tokens} # the tokens trained on so far
        if hellaswag:
            self.say(f"step {iter_num}: hellaswag acc_norm {hellaswag['acc_norm']:.4f}, acc {hellaswag['acc']:.4f}")
            record.update(hellaswag_acc=hellaswag['acc'], hellaswag_acc_norm=hellaswag['acc_norm'])
        if self.master:
            self.record(record, kept)

    def start_wandb(self, project, name, config):
        """wandb too: before out_dir is made, as it fails without an API key or network."""
        try:
            import wandb
        except ImportError:
            raise UserError("wandb_log=True but wandb is not installed; pip install wandb, or --wandb_log=False")
        try:
            wandb.init(project=project, name=name, config=config)
        except wandb.errors.Error as e:
            raise UserError(f"wandb cannot start ({first_line(e)}); without network or login run with "
                            f"WANDB_MODE=offline (and wandb sync later), or --wandb_log=False")
        self.wandb = wandb

    def record(self, record, kept):
        """Appends record to log.jsonl, and a loss's record to wandb; a disk that fails ends the run in one line that
        says what is kept."""
        with writing(self.path, kept):
            self.file.write(json.dumps(record) + '\n') # json writes floats exactly: runs compare bit for bit
        if self.wandb and ('loss' in record or 'val_loss' in record):
            self.wandb.log({WANDB_KEYS[k]: v * 100 if k == 'mfu' else v for k, v in record.items()
                            if k in WANDB_KEYS and v is not None}, step=record['iter']) # mfu in percent

    def close(self):
        if self.wandb:
            self.wandb.finish()


def progress(done, total, since):
    """How far the run is, done of total iterations, and once its rate is known (since: (time, iterations done) after
    this process's first iteration), the time left at that rate, evaluations and checkpoints included."""
    text = f"{100 * done / total:.1f}% of {total:,} iters" if total else "no iters to train"
    if since is not None and done > since[1]:
        text += f", {duration((time.time() - since[0]) / (done - since[1]) * (total - done))} left"
    return text


def summary(out_dir, iter_num, stopped_by, eval_only, seconds, tokens_now, tokens, best_val_loss, best_iter, ddp):
    """How the run ended (stopped_by: the stop's reason, or None), what it reached, where its model is, and what to
    run next."""
    q = shlex.quote(out_dir)
    if stopped_by:
        lines = [f"stopped at iter {iter_num} by {stopped_by}"]
    else:
        lines = [f"evaluated the model of iter {iter_num}" if eval_only else f"training ended at iter {iter_num}"]
    lines[0] += f" after {duration(seconds)}, having trained on {tokens_now:,} tokens ({tokens:,} in all)"
    if best_iter is not None or best_val_loss < 1e9:
        lines.append(f"best val loss {best_val_loss:.4f}" + (f" at iter {best_iter}" if best_iter is not None else ""))
    if eval_only:
        return '\n'.join(lines)
    if os.path.exists(os.path.join(out_dir, LAST)):
        lines.append(f"the model of the best val loss is in {os.path.join(out_dir, CKPT)}, the newest state in "
                     f"{os.path.join(out_dir, LAST)}")
    else:
        lines.append(f"the model is in {os.path.join(out_dir, CKPT)}")
    if stopped_by:
        lines.append(f"to go on: python train.py --out_dir={q} --init_from=resume"
                     + (" (under the same torchrun)" if ddp else ""))
    else:
        lines.append(f"next: python sample.py --out_dir={q}; python plot.py --out_dir={q}; "
                     f"python export.py --out_dir={q}")
    return '\n'.join(lines)
