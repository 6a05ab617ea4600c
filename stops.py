"""How a training run stops: a signal, a stream that cannot be written or a batch of bad data only raises a flag,
and the run stops at the next point that every process passes at once (between micro steps, between the batches
of an evaluation), where the state of the last finished iteration is saved. A second signal stops at once, leaving
the checkpoints as they are. torchrun passes a SIGINT or SIGTERM on to every process, and kills them 30 s later."""

import os
import signal

import errors
import parallel


class Stop:
    """The flag: reason (None until a stop is asked for) and whether it is a fault (error: exit code 1)."""

    def __init__(self, out):
        self.reason, self.error, self.out = None, False, out
        errors.stop_on_broken_stream(lambda reason: self.request(reason, error=True))

    def request(self, reason, error=False):
        if self.reason is None:
            self.reason, self.error = reason, error

    def catch_signals(self):
        """From here on Ctrl-C and SIGTERM raise the flag (before, they end the process at once: nothing to save)."""
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self.reason is not None:
            print(f"{name} again: stopping now, without a checkpoint", file=self.out, flush=True)
            os._exit(128 + signum) # what the shell reports for a process killed by the signal
        print(f"{name}: stopping after this micro step, with a checkpoint (again to stop now)", file=self.out,
              flush=True)
        self.request(name)

    def agreed(self):
        """Whether to stop here: every process asks at the same points, and all get the same answer."""
        return parallel.any_process(self.reason is not None)

    def shared(self):
        """Under torchrun, after the processes agreed to stop: the processes that were not asked hear why from one
        that was."""
        self.reason, self.error = next((r for r in parallel.gather((self.reason, self.error)) if r[0]), (None, False))
