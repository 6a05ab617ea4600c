"""
How the benchmarks measure memory, from Linux's /proc, in one module:
- peak_memory(command): the peak of a whole process tree (a script and every process it starts: tokenizer workers,
  torchrun ranks), sampled every 20 ms while it runs. RSS counts each page once per process that maps it, so forked
  workers that share their parent's pages count them again; PSS shares such pages out among the processes that map
  them, so the sum over a tree is what the tree really holds. Both are reported.
- peak_rss(): a process's own exact high-water mark so far, for a process (a torchrun rank) to report its peak at
  the moments it chooses: after building the model, after training.
- wait_peak_rss(proc): the same high-water mark of a child process's program, followed until it ends.
"""

import os
import subprocess
import time


def tree(pid):
    """pid and all its descendants that are alive now."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])  # the command name may hold spaces
        except OSError:  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(entry))
    pids = [pid]
    for p in pids:
        pids += children.get(p, [])
    return pids


def tree_memory(pid):
    """(RSS, PSS) in MB, summed over process pid and its descendants."""
    total = {'Rss:': 0, 'Pss:': 0}
    for p in tree(pid):
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                for line in f:
                    key, value = line.split()[:2]
                    if key in total:
                        total[key] += int(value)  # kB
        except OSError:
            pass
    return total['Rss:'] / 1024, total['Pss:'] / 1024


def peak_memory(command, **popen_args):
    """Runs command (a list, as for subprocess.Popen, which takes popen_args) to its end; returns (its exit code,
    the peak RSS and the peak PSS of its process tree in MB)."""
    proc = subprocess.Popen(command, **popen_args)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.02)
    return proc.returncode, peak_rss, peak_pss


def peak_rss(pid='self'):
    """The most resident memory (bytes) the process pid ('self': this one) has held so far: the kernel's VmHWM,
    what getrusage's ru_maxrss reports."""
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM:')) # in kB


def wait_peak_rss(proc):
    """Waits for proc (a subprocess.Popen) to end; returns its exit code and the most resident memory (bytes) its
    program held: its high-water mark (peak_rss's), read every 20 ms, so that only growth in its last 20 ms could be
    missed. Not wait4's ru_maxrss, which for a child started by fork or vfork also counts its parent's own peak, the
    pages they shared until the exec."""
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, peak_rss(proc.pid))
        except (OSError, StopIteration):  # it ended meanwhile (a zombie's status has no VmHWM)
            pass
        time.sleep(0.02)
    return proc.returncode, peak
