"""The test session's own guard (conftest.py): what a test leaves running does not outlive the session."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow


def test_a_process_that_a_test_leaves_running_is_ended_and_named_at_the_end_of_the_session(tmp_path):
    shutil.copy(REPO / 'tests' / 'conftest.py', tmp_path)
    (tmp_path / 'test_leak.py').write_text("import subprocess, sys\n\ndef test_leaks():\n    subprocess.Popen("
                                           "[sys.executable, '-c', 'import time; time.sleep(600)'])\n")
    (tmp_path / 'pytest.ini').write_text('[pytest]\n')
    result = subprocess.run([sys.executable, '-m', 'pytest', '-n', '0', '-p', 'no:cacheprovider', 'test_leak.py'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'PYTHONPATH': str(REPO / 'tests')})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pid = int(re.search(r"the tests left process (\d+) running: .*time\.sleep\(600\); ending it",
                        result.stdout + result.stderr).group(1))
    assert not os.path.exists(f'/proc/{pid}') or ' Z ' in open(f'/proc/{pid}/stat').read()
