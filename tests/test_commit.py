"""fileio's changes of several files as readers meet them: a commit racing a reader, an export swapped in under one.
(What a kill at each call of a commit leaves is in test_crash_points.py, the enumeration tier.)"""

import subprocess
import sys

import pytest

from fileio import exchange, open_snapshot, read_directory
from helpers import REPO

# commits a.bin and b.bin in the folder it is given, both holding the same generation number, as fast as it can, for
# the seconds it is given
WRITER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from fileio import commit, temp_path
directory, end, generation = sys.argv[2], time.time() + float(sys.argv[3]), 0
while time.time() < end:
    generation += 1
    moves = {}
    for name in ('a.bin', 'b.bin'):
        with open(temp_path(os.path.join(directory, name)), 'wb') as f:
            f.write(b'%d' % generation)
        moves[os.path.basename(temp_path(os.path.join(directory, name)))] = name
    commit(directory, moves)
print(generation)
"""


@pytest.mark.slow  # two processes busy for 1.5 s
def test_a_reader_racing_a_writer_opens_the_files_of_one_change(tmp_path):
    for name in ('a.bin', 'b.bin'):
        (tmp_path / name).write_bytes(b'0')
    writer = subprocess.Popen([sys.executable, '-c', WRITER, str(REPO), str(tmp_path), '1.5'], stdout=subprocess.PIPE,
                              text=True)
    seen = set()
    while writer.poll() is None:
        files = open_snapshot(tmp_path, ['a.bin', 'b.bin'])
        with files['a.bin'] as a, files['b.bin'] as b:
            generation = a.read()
            assert b.read() == generation  # never a of one change and b of another
        seen.add(generation)
    assert writer.returncode == 0
    assert len(seen) > 10  # the reader met many changes: it raced the writer


def test_an_export_swapped_in_while_it_is_read_is_read_again(tmp_path):
    for name in ('hf', 'new'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'config.json').write_text(name)
        (tmp_path / name / 'model.safetensors').write_text(name)
    reads = []

    def read():  # a reader that opens an export's files one at a time, and a new export swapped in between
        config = (tmp_path / 'hf' / 'config.json').read_text()
        if not reads:
            assert exchange(tmp_path / 'new', tmp_path / 'hf')
        reads.append((config, (tmp_path / 'hf' / 'model.safetensors').read_text()))
        return reads[-1]

    assert read_directory(tmp_path / 'hf', read) == ('new', 'new')
    assert reads == [('hf', 'new'), ('new', 'new')]  # the mix was read, and read again
