"""
How the scripts fail: a mistake the user can fix (a UserError) or a machine that cannot take a write (a full disk, a
read-only folder) ends the script with one line on stderr that says what is wrong and how to fix it, exit code 1,
no traceback. Each script calls install() first; importing this module changes nothing.

Output streams: a script's stdout holds its result (result_stream), everything else goes to stderr. A stream that
cannot be written never raises where something printed: a closed pipe ends a script quietly, as Unix tools end
(exit code 141, what a shell reports for SIGPIPE), and a full disk ends it in one line; train.py instead takes either
as a reason to stop (stop_on_broken_stream), which saves its state.
"""

import errno
import os
import signal
import sys
from contextlib import contextmanager

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f, FAT32's 4 GB)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
BAD_PATH = {errno.ENOTDIR: "a part of its path is a file, not a directory", errno.EISDIR: "it is a directory",
            errno.EEXIST: "a file is in the way", errno.ENAMETOOLONG: "its name is too long",
            errno.ELOOP: "its path loops through symbolic links",
            errno.ENOENT: "a folder on its path cannot be made there"}  # /proc, say: only for a folder on the way


class UserError(Exception):
    """A mistake the user can fix, or a machine that cannot do what was asked; the message says what to do."""


def first_line(error):
    """An exception's message cut to its first line, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def os_error(error):
    """The OSError behind error: error itself, or one it was raised from or while handling (torch.save, for one,
    turns the OSError of a failed write into a RuntimeError); None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def writing(where, advice=""):
    """Around writes to where (a file or folder): a full disk, a file-size limit, a read-only or forbidden target, a
    path that cannot be a file's (a file on the way, a name too long) become a UserError naming where, with advice
    (what was kept, how to go on) after it."""
    try:
        yield
    except Exception as e:
        cause = os_error(e)
        number = cause.errno if cause is not None else next( # libraries that keep only the message (safetensors)
            (n for n in DISK_FULL + NOT_WRITABLE if os.strerror(n) in str(e)), None)
        if number not in DISK_FULL + NOT_WRITABLE + tuple(BAD_PATH) or number == errno.ENOENT and not (
                cause is not None and cause.filename and on_the_way(os.fsdecode(cause.filename), where)):
            raise
        what = {errno.EFBIG: "a file-size limit is reached", **dict.fromkeys(NOT_WRITABLE, "it is not writable"),
                **BAD_PATH}.get(number, "the disk is full")
        raise UserError(f"cannot write {where}: {what} ({os.strerror(number)})" + (f"; {advice}" if advice else "")
                        ) from None


def on_the_way(folder, where):
    """Whether folder is where or a folder on the way to it."""
    folder, where = os.path.abspath(folder), os.path.abspath(where)
    return os.path.commonpath([folder, where]) == folder


def out_of_memory(error):
    """Whether error is an allocation that failed: Python's, torch's on a GPU, or its CPU allocator's."""
    return isinstance(error, MemoryError) or type(error).__name__ == 'OutOfMemoryError' or (
        isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or 'not enough memory' in str(error)))


def _report(kind, error, traceback):
    if issubclass(kind, UserError):
        print(f"error: {error}", file=sys.stderr)
    elif out_of_memory(error):
        print(f"error: out of memory ({first_line(error)[:200]}); use smaller sizes (batch_size, block_size, the "
              f"model's, max_batch_size) or a device with more memory", file=sys.stderr)
    elif issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)  # Python then exits as killed by SIGINT, status 130
    else:
        sys.__excepthook__(kind, error, traceback)


class GuardedStream:
    """stdout or stderr, whose writes never raise in the code that printed: a write that fails (a full disk, a closed
    pipe, a file-size limit) points the stream's file descriptor at /dev/null, so that what follows and Python's own
    flush at exit go nowhere, and calls the script's handler (see install) once."""

    def __init__(self, stream, name):
        self.stream, self.name, self.broken = stream, name, False

    def write(self, text):
        if not self.broken:
            try:
                return self.stream.write(text)
            except OSError as e:
                self._broke(e)
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self.stream.flush()
            except OSError as e:
                self._broke(e)

    def _broke(self, error):
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # a stream without a file descriptor (a test's StringIO)
            pass
        _on_broken_stream(self.name, error)

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer, ...: the stream's own
        return getattr(self.stream, name)


def _one_line(name, error):
    if error.errno == errno.EPIPE:  # the reader has gone (`| head`): quietly, and `finally` blocks still run
        raise SystemExit(128 + signal.SIGPIPE)
    raise UserError(f"cannot write to {name}: {error.strerror or error}")


_on_broken_stream = _one_line  # what a script does when stdout or stderr cannot be written


def stop_on_broken_stream(stop):
    """For train.py: a stream that cannot be written, a closed pipe included, calls stop(reason) instead of ending the
    script, so that the run stops as on SIGTERM and saves its state."""
    global _on_broken_stream
    _on_broken_stream = lambda name, error: stop(f"{name} cannot be written ({error.strerror or error})")


def result_stream():
    """The stream for the script's result (samples, a score, a summary of what was written): stdout. Everything
    else printed from here on, by the script or the libraries it calls, goes to stderr, so that `> file` and
    `| head` give the result alone."""
    result = sys.stdout
    sys.stdout = sys.stderr
    return result


_installed_by = None  # the process that called install(); forked workers inherit the handler, not the wish


def _terminate(signum, frame):
    if os.getpid() != _installed_by: # a worker (multiprocessing's Pool ends its workers so): die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum) # as Ctrl-C does: `finally` blocks run, so temporary files are removed


def install():
    """Makes this process end a UserError in one line and Ctrl-C without a traceback, lets SIGTERM run `finally`
    blocks as Ctrl-C does, lets printing never fail on a character the terminal's encoding lacks, and guards stdout
    and stderr (GuardedStream): a closed pipe ends the process quietly, as Unix tools end. (Python ignores SIGPIPE,
    so that a write to any pipe or socket whose reader has gone is an error where it happens, not the process's
    end: a dead worker's pipe is handled where it is used.)"""
    global _installed_by
    _installed_by = os.getpid()
    sys.excepthook = _report
    signal.signal(signal.SIGTERM, _terminate)
    for name in ('stdout', 'stderr'):
        stream = getattr(sys, name)
        if isinstance(stream, GuardedStream):  # installed before, in this process (a test runs scripts in-process)
            continue
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')
        setattr(sys, name, GuardedStream(stream, name))
