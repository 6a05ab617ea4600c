"""
Downloading, reading and writing files (datasets, checkpoints, exports), so that a failed or interrupted run never
leaves a half-written file under a final name, no run deletes what another is writing, and a user's mistake (a bad
path, no network, a full disk) ends in one line saying how to fix it.

Whatever is being written lives under temp_path(path), path.tmp.<pid>@<host>, until it takes its final name in one
rename. A writer killed on the way (kill -9, a power cut) leaves it behind; remove_stale_temps(path) removes only
those whose process is gone.

An output of several files (a dataset's train.bin, val.bin and meta.pkl; ckpt.pt with the last.pt it makes stale)
changes as one (commit): a record of its renames and removals goes into the directory first, in one rename, and is
deleted once they are done. A writer killed in between leaves the record: the next one to claim the directory
finishes it before anything else (roll_forward), and readers never write but read through it (open_snapshot), so
every script sees the earlier files or the new ones, never a mix. A directory that is replaced whole (an export)
swaps places with its new version in one rename (exchange).
"""

import ctypes
import errno
import fcntl
import http.client
import json
import os
import shutil
import socket
import sys
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


def check_directory_path(path, setting):
    """Raises a UserError unless path can be a directory, before anything is loaded or written: it names one, and
    neither it nor any folder on the way to it is a file."""
    if not path:
        raise UserError(f"{setting} is empty; name a directory, e.g. --{setting}=out")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # false for a path below a file too
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == os.path.abspath(path) else f"is below {existing}, which is a file"
        raise UserError(f"{setting}={path} {where}, not a directory; pick another --{setting}")


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


WRITE_BUFFER = 2**20  # torch.save writes a checkpoint in many small pieces: a few large writes instead


def write_atomically(path, write, advice="", removals=()):
    """Calls write(f) on a new binary file that takes path's place only once write returns and the data is on disk:
    a crash at any moment leaves either the old file or the new one, whole, and a temp file that the next write of
    path removes. removals: names of files beside path that go in the same change (see commit). A full disk or a
    read-only folder ends in one line, with advice after it."""
    tmp = temp_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        with writing(path, advice or f"{path} is as it was"):
            if read_record(directory) is None:  # (a pending record's temps are its roll-forward's)
                remove_stale_temps(path)  # what a killed writer of path left
            with open(tmp, 'wb', buffering=WRITE_BUFFER) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            commit(directory, {os.path.basename(tmp): os.path.basename(path)}, removals)
    finally:
        if os.path.exists(tmp) and read_record(directory) is None:  # a record names it: it is the roll-forward's
            os.remove(tmp)


def sync_directory(directory):
    """Makes the renames in directory durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------- changes of several files

COMMIT = '.commit'  # a directory's commit record: {"moves": [[source, destination], ...], "removals": [name, ...]}
SNAPSHOT_TRIES = 100  # a reader opens a directory's files again when a writer changed them meanwhile, this often


def commit(directory, moves, removals=()):
    """Gives each file in moves ({source: destination}, paths relative to directory, each source whole and on disk)
    its destination and removes the files that removals names, as one change: whatever moment a crash strikes,
    directory holds the state before it or, as open_snapshot reads it, the state after. With more than one
    rename or removal, a record of them goes first (COMMIT, in one rename), which the next writer to claim directory
    finishes if this one dies (roll_forward). The caller holds directory (claim), or moves a single file."""
    removals = [name for name in removals if os.path.lexists(os.path.join(directory, name))]
    record = {'moves': [[source, destination] for source, destination in moves.items()], 'removals': removals}
    recorded = len(record['moves']) + len(removals) > 1
    if recorded:
        write_atomically(os.path.join(directory, COMMIT), lambda f: f.write(json.dumps(record).encode()))
    apply(directory, record)
    if recorded:
        os.remove(os.path.join(directory, COMMIT))
        sync_directory(directory)  # gone for good before the directory changes again


def apply(directory, record):
    """Does what is left of record's renames and removals: a rename whose source is gone was done."""
    folders = {directory}
    for source, destination in record['moves']:
        if os.path.lexists(os.path.join(directory, source)):
            folder = os.path.dirname(os.path.join(directory, destination))
            if not os.path.isdir(folder):
                os.makedirs(folder)
            os.replace(os.path.join(directory, source), os.path.join(directory, destination))
            folders.add(folder)
    for name in record['removals']:
        if os.path.lexists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
    for folder in sorted(folders):
        sync_directory(folder)


def read_record(directory):
    """The commit record in directory (see commit), or None when no change is under way."""
    path = os.path.join(directory, COMMIT)
    try:
        with open(path, 'rb') as f:
            record = json.loads(f.read())
        if not (isinstance(record, dict) and all(isinstance(s, str) and isinstance(d, str) for s, d in record['moves'])
                and all(isinstance(name, str) for name in record['removals'])):
            raise ValueError("not a commit record")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}")
    except (ValueError, KeyError, TypeError) as e:  # written atomically, so never torn: someone else's file
        raise UserError(f"{path} is not a commit record of these scripts ({e}); move it away")
    return record


def roll_forward(directory):
    """Finishes the change that a writer killed in directory recorded (see commit), and removes the record it was
    writing when it was killed before that; says what it finished on stderr. For the process that claims directory,
    before it does anything else there."""
    remove_stale_temps(os.path.join(directory, COMMIT))
    record = read_record(directory)
    if record is None:
        return
    with writing(directory, "run again once it can be written"):
        apply(directory, record)
        os.remove(os.path.join(directory, COMMIT))
        sync_directory(directory)
    changed = [destination for _, destination in record['moves']] + [f"{name} (removed)" for name in record['removals']]
    print(f"finished the change a killed run had begun in {directory}: {', '.join(changed)}", file=sys.stderr)


def committed_paths(directory, name, record):
    """Where name's content is once record (None: no change under way) is done: the paths to try in turn, the
    first that exists holding it; none if the change removes name or moves it away."""
    sources = [source for source, destination in (record or {'moves': []})['moves'] if destination == name]
    if sources:
        return [os.path.join(directory, sources[0]), os.path.join(directory, name)]  # not renamed yet, or renamed
    if record and (name in record['removals'] or any(source == name for source, _ in record['moves'])):
        return []
    return [os.path.join(directory, name)]


def open_first(paths):
    """The first of paths that can be opened, open for reading in binary; None when none exists."""
    for path in paths:
        try:
            return open(path, 'rb')
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}")
    return None


def file_at(paths):
    """(device, inode) of the first of paths that exists, or None."""
    for path in paths:
        try:
            info = os.stat(path)
            return info.st_dev, info.st_ino
        except FileNotFoundError:
            continue
    return None


def open_snapshot(directory, names):
    """{name: open binary file, or None where there is none} for names in directory, all of one committed state:
    a change under way (or left by a killed writer) is read as done, and the files are opened again when a writer
    changed any of them meanwhile. Each file keeps that content for as long as it is open, whatever is written
    after. Readers change nothing: they need no lock, and work on read-only folders."""
    for _ in range(SNAPSHOT_TRIES):
        record = read_record(directory)
        files = {name: open_first(committed_paths(directory, name, record)) for name in names}
        # a file is never changed in place, only replaced: when each name still leads to the file opened (or to
        # none), no change came between the first open and the last, so they are of one state
        record = read_record(directory)
        opened = {name: f and (os.fstat(f.fileno()).st_dev, os.fstat(f.fileno()).st_ino) for name, f in files.items()}
        if all(opened[name] == file_at(committed_paths(directory, name, record)) for name in names):
            return files
        for f in files.values():
            if f is not None:
                f.close()
    raise UserError(f"the files in {directory} kept changing while they were read; run again once the script "
                    f"writing them is done")


def open_committed(path):
    """path open for reading in binary as its directory's last commit left it (open_snapshot), or None."""
    directory, name = os.path.split(path)
    return open_snapshot(directory or '.', [name])[name]


def read_directory(path, read):
    """read()'s result, read from the directory at path in one state: read again when path was replaced meanwhile
    (a new export swapped in, see exchange), which a reader that opens its files one at a time could see half of."""
    for _ in range(SNAPSHOT_TRIES):
        before = file_at([path])
        try:
            result = read()
        except Exception:
            if file_at([path]) == before:
                raise
            continue  # a file was gone: the earlier directory was removed under the reader
        if file_at([path]) == before:
            return result
    raise UserError(f"{path} kept being replaced while it was read; run again once the script writing it is done")


RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
AT_FDCWD = -100


def exchange(a, b):
    """Swaps the names of a and b in one step (Linux's renameat2 with RENAME_EXCHANGE), so that a reader finds
    either the one or the other at each name, never nothing. False where the system or the file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), 'renameat2', None)  # glibc 2.28 on
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    number = ctypes.get_errno()
    if number in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # NFS, older kernels, FUSE file systems
        return False
    raise OSError(number, os.strerror(number), a)
# ----------------------------------------------------------------------------- logs and locks

def open_log(path):
    """path opened for appending lines (log.jsonl: a JSON record a line), once its tail is whole: a writer cut off
    mid-line (a power cut, a full disk) leaves a torn last line, and a power cut can leave a block of NUL bytes at
    the end, which the next record would be glued onto. A last line that is a whole record only lacks its newline
    and gets it; anything else after the last newline is removed. Returns (file, what was repaired or None)."""
    repaired = None
    if os.path.isfile(path):
        with open(path, 'rb+') as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 2**20))  # a torn line, or a power cut's block of NULs, is within its last megabyte
            tail = f.read()
            content = tail.rstrip(b'\0')
            nuls = len(tail) - len(content)
            line = content[content.rfind(b'\n') + 1:]
            if nuls or line:
                try:
                    whole = bool(line) and isinstance(json.loads(line), dict)
                except ValueError:  # UnicodeDecodeError included
                    whole = False
                end = size - len(tail) + len(content) - (0 if whole else len(line))
                f.truncate(end)
                if whole:
                    f.seek(end)
                    f.write(b'\n')
                repaired = ", ".join(part for part in (
                    f"removed a torn last line of {len(line)} bytes" if line and not whole else "",
                    "ended the last line, which lacked its newline" if whole else "",
                    f"removed {nuls} NUL bytes at its end" if nuls else "") if part) + \
                    " (left by a run that was cut off)"
    return open(path, 'a', buffering=1), repaired


LOCK = '.lock'
_claimed = {}  # directory -> the open lock file, held until the process ends


def claim(directory, advice):
    """Makes this process the one that writes into directory until it ends, or raises a UserError naming the
    process that holds it, with advice. The lock is an flock on directory/.lock, which the system drops with its
    process however that ends (kill -9, a crash): a dead run's lock never blocks the next one. First, a change that
    a killed writer left unfinished there is finished (roll_forward)."""
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
    roll_forward(directory)


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
