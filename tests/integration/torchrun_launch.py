"""Starting torchrun for the data-parallel tests: commands, bounded waits, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration import distributed_script

SCRIPT = Path(distributed_script.__file__)
TIMEOUT = 240.0
"""Seconds one torchrun launch may take, on a busy 2-core machine."""


def torchrun(*options: str) -> list[str]:
    """``python -m torch.distributed.run`` with ``options``; failed processes not restarted."""
    return [sys.executable, "-m", "torch.distributed.run", "--max-restarts=0", *options]


def script_args(out: Path, berts: tuple[Path, Path], *scenarios: str, **extra: str) -> list[str]:
    """The training script and its arguments: all scenarios unless some are named."""
    args = [str(SCRIPT), str(out), "--bert", str(berts[0]), "--bert-dropout", str(berts[1])]
    for name in scenarios:
        args += ["--scenario", name]
    for key, value in extra.items():
        args += [f"--{key}", value]
    return args


def start(command: list[str], **env: str) -> subprocess.Popen[str]:
    """Start ``command`` with one thread per process and gloo on the loopback interface."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
               "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=environ, stdin=subprocess.DEVNULL)  # fmt: skip


def finish(processes: list[subprocess.Popen[str]], timeout: float = TIMEOUT) -> None:
    """Wait for every process, ``timeout`` seconds in all; fail with their output if one fails."""
    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for process in processes:
            left = max(0.1, deadline - time.monotonic())
            outputs.append(process.communicate(timeout=left)[0])
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        outputs = [process.communicate()[0] for process in processes]
        pytest.fail("torchrun did not finish in time:\n" + "\n---\n".join(outputs))
    codes = [process.returncode for process in processes]
    assert codes == [0] * len(processes), "\n---\n".join(o[-6000:] for o in outputs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
