"""Peak memory, measured one way for every benchmark: a process's resident high-water mark."""


def peak_rss(pid='self'):
    """The most resident memory (bytes) the process pid ('self': this one) has held so far: the kernel's VmHWM,
    what getrusage's ru_maxrss reports. A torchrun process reads its own; for a process tree, read each process
    before it exits (their peaks need not fall at the same moment, so their sum is an upper bound)."""
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM:')) # in kB
