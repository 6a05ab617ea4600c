"""What a run needs to be repeated or compared: the code version, and the hardware it ran on."""

import os
import platform
import subprocess

import torch


def device_name(device):
    """The GPU's name, or the CPU's model and the threads torch uses."""
    device_type = torch.device(device).type
    if device_type == 'cuda':
        return torch.cuda.get_device_name(device)
    if device_type == 'cpu':
        try:
            with open('/proc/cpuinfo') as f:
                cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), None)
        except OSError:
            cpu = None
        return f"{cpu or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return f"{device_type} on {platform.machine()}"


def git_commit():
    """The commit of this checkout, with '-dirty' when it has uncommitted changes; None outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True, timeout=10)
        status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ('-dirty' if status.stdout.strip() else '')


def run_record(config, device, dtype, world_size, run_id):
    """What a run needs to be repeated or compared: saved in every checkpoint and first in log.jsonl."""
    return dict(config=dict(config), git_commit=git_commit(), python=platform.python_version(),
                torch=str(torch.__version__), device=device, device_name=device_name(device), dtype=dtype,
                world_size=world_size, run_id=run_id)
