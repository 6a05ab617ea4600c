"""
Downloading, reading and writing files (datasets, checkpoints, exports), so that a failed or interrupted run never
leaves a half-written file under a final name, no run deletes what another is writing, and a user's mistake (a bad
path, no network, a full disk) ends in one line saying how to fix it.

Whatever is being written lives under temp_path(path), path.tmp.<pid>@<host>, until it takes its final name in one
rename. A writer killed on the way (kill -9, a power cut) leaves it behind; remove_stale_temps(path) removes only
those whose process is gone.
"""

import fcntl
import http.client
import os
import shutil
import socket
import time
import urllib.request

from errors import UserError, writing


def download(url, path, fix):
    """Writes url's content to path, making its folder if needed. On failure raises a UserError naming url and
    ending with fix, the caller's advice on how to get the file another way."""
    print(f"downloading {url} to {path}")
    try:
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        with urllib.request.urlopen(url, timeout=30) as response:
            write_atomically(path, lambda f: shutil.copyfileobj(response, f, 1 << 20))  # 1 MB at a time
    except (OSError, http.client.HTTPException) as e:  # urllib's errors are OSErrors; a cut transfer is not
        reason = getattr(e, 'reason', None) or e
        raise UserError(f"cannot download {url} ({reason}); {fix}")


def read_text(path):
    """The content of a UTF-8 text file."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8')
    except OSError as e:
        raise UserError(f"could not read {path}: {e.strerror}")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid UTF-8 (byte offset {e.start})")


def temp_path(path):
    """Where path is written before it takes its name: beside it, so that the move is a rename, and named for its
    writer, so that two processes never share one and a stale one can be told from one being written."""
    return f"{os.fspath(path).rstrip(os.sep)}.tmp.{os.getpid()}@{socket.gethostname()}"


def writer_is_gone(temp_name):
    """Whether the process that temp_path() named temp_name for has ended. One of another host is taken to live."""
    pid, _, host = temp_name.rpartition('.tmp.')[2].partition('@')
    if not pid.isdigit() or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's
        pass
    return False


def stale_temps(path):
    """The files and folders that temp_path(path) named for processes that are gone."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path).rstrip(os.sep)))
    return [os.path.join(directory, entry) for entry in sorted(os.listdir(directory))
            if entry.startswith(f"{name}.tmp.") and writer_is_gone(entry)]


def remove_stale_temps(path):
    """Removes stale_temps(path); returns their paths."""
    stale = stale_temps(path)
    for entry in stale:
        shutil.rmtree(entry) if os.path.isdir(entry) and not os.path.islink(entry) else os.remove(entry)
    return stale


def write_atomically(path, write, advice=""):
    """Calls write(f) on a new binary file that takes path's place only once write returns and the data is on disk:
    a crash at any moment leaves either the old file or the new one, whole. A full disk or a read-only folder ends
    in one line, with advice after it."""
    tmp = temp_path(path)
    try:
        with writing(path, advice or f"{path} is as it was"):
            with open(tmp, 'wb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    sync_directory(os.path.dirname(os.path.abspath(path)))


def sync_directory(directory):
    """Makes the renames in directory durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


LOCK = '.lock'
_claimed = {}  # directory -> the open lock file, held until the process ends


def claim(directory, advice):
    """Makes this process the one that writes into directory until it ends, or raises a UserError naming the
    process that holds it, with advice. The lock is an flock on directory/.lock, which the system drops with its
    process however that ends (kill -9, a crash): a dead run's lock never blocks the next one."""
    if os.path.abspath(directory) in _claimed:
        return
    path = os.path.join(directory, LOCK)
    with writing(path, "nothing was written there"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            lock_or_refuse(fd, directory, advice)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} (since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
    _claimed[os.path.abspath(directory)] = fd


def check_unclaimed(directory, advice):
    """Raises claim()'s UserError if another process holds directory, and changes nothing: for a run's first
    seconds, so that a busy out_dir is said before minutes of loading, not after. By the one process that will
    claim it: it takes the lock for a moment, which a second process checking or claiming would meet."""
    if os.path.abspath(directory) in _claimed:
        return
    try:
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY)
    except OSError:  # no lock file, so never claimed (or unreadable: claim() will say so when it writes)
        return
    try:
        lock_or_refuse(fd, directory, advice)
    finally:
        os.close(fd)  # and with it the lock, if it was free


def lock_or_refuse(fd, directory, advice):
    """Takes the flock of directory's lock file fd, or raises a UserError naming the process that holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or "another process"
        raise UserError(f"{directory} is in use by {holder}; {advice}") from None
