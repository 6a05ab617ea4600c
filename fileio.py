"""
Downloading, reading and saving files (datasets, checkpoints), so that a failed or interrupted run never leaves a
half-written file behind and a user's mistake (a bad path, no network) ends in one line saying how to fix it.
"""

import argparse
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


TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'


def tiny_shakespeare(description, script_dir):
    """The command line of data/shakespeare*/prepare.py: returns the tiny Shakespeare text and the folder for the
    outputs (--out_dir, by default script_dir, where train.py looks). input.txt is downloaded there when absent,
    unless --input names a local copy."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', help="text file to use instead of input.txt in --out_dir")
    parser.add_argument('--url', default=TINY_SHAKESPEARE_URL, help="where to download input.txt from when absent")
    parser.add_argument('--out_dir', default=script_dir, help="where the outputs (and a downloaded input.txt) go; "
                                                              "default: the script's folder, where train.py looks")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    input_path = args.input or os.path.join(args.out_dir, 'input.txt')
    if args.input is None and not os.path.exists(input_path):
        download(args.url, input_path, f"put the file at {input_path} or pass --input PATH")
    return read_text(input_path), args.out_dir


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
    """Calls write(f) on a new binary file that takes path's place only once write returns and the data is on disk:
    a crash at any moment leaves either the old file or the new one, whole."""
    tmp = f"{path}.tmp.{os.getpid()}"  # in path's folder, so os.replace is a rename; pid: two runs never share it
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    # make the rename itself durable
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
