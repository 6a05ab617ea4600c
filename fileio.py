"""
Downloading, reading and saving files for the data scripts, so that a failed or interrupted run never leaves a
half-written file behind and a user's mistake (a bad path, no network) ends in one line saying how to fix it.
"""

import http.client
import os
import shutil
import urllib.request

from configurator import UserError


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


def write_atomically(path, write):
    """Calls write(f) on a new binary file that takes path's place only once write returns."""
    tmp = f"{path}.tmp.{os.getpid()}"  # in path's folder, so os.replace is a rename; pid: two runs never share it
    try:
        with open(tmp, 'wb') as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
