"""
How the scripts fail: a mistake the user can fix (a UserError) or a machine that cannot take a write (a full disk, a
read-only folder) ends the script with one line on stderr that says what is wrong and how to fix it, exit code 1,
no traceback. Each script calls install() first; importing this module changes nothing.
"""

import errno
import os
import signal
import sys
from contextlib import contextmanager

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f, FAT32's 4 GB)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


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
    """Around writes to where (a file or folder): a full disk, a file-size limit, a read-only or forbidden target
    become a UserError naming where, with advice (what was kept, how to go on) after it."""
    try:
        yield
    except Exception as e:
        cause = os_error(e)
        number = cause.errno if cause is not None else next( # libraries that keep only the message (safetensors)
            (n for n in DISK_FULL + NOT_WRITABLE if os.strerror(n) in str(e)), None)
        if number not in DISK_FULL + NOT_WRITABLE:
            raise
        what = {errno.EFBIG: "a file-size limit is reached", **dict.fromkeys(NOT_WRITABLE, "it is not writable")
                }.get(number, "the disk is full")
        raise UserError(f"cannot write {where}: {what} ({os.strerror(number)})" + (f"; {advice}" if advice else "")
                        ) from None


def _report(kind, error, traceback):
    if issubclass(kind, UserError):
        print(f"error: {error}", file=sys.stderr)
    elif issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)  # Python then exits as killed by SIGINT, status 130
    else:
        sys.__excepthook__(kind, error, traceback)


_installed_by = None  # the process that called install(); forked workers inherit the handler, not the wish


def _terminate(signum, frame):
    if os.getpid() != _installed_by: # a worker (multiprocessing's Pool ends its workers so): die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum) # as Ctrl-C does: `finally` blocks run, so temporary files are removed


def install():
    """Makes this process end a UserError in one line and Ctrl-C without a traceback, lets SIGTERM run `finally`
    blocks as Ctrl-C does, and lets printing never fail on a character the terminal's encoding lacks."""
    global _installed_by
    _installed_by = os.getpid()
    sys.excepthook = _report
    signal.signal(signal.SIGTERM, _terminate)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')
