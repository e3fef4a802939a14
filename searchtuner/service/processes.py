"""Child process groups for the service and the search Flow: start one with its output in a
log file, wait until it answers, stop it like Ctrl-C.

Used by the demos (``searchtuner demo`` starts ``searchtuner serve`` and ``python -m
flows.search``) and by the end-to-end tests, so all of them start, watch and stop a Flow the
same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from searchtuner.errors import SearchTunerError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now, on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ProcessGroup:
    """A command run in a session of its own (so its executors and workers go with it),
    stdout and stderr appended to ``log``.

    Args:
        argv: the command.
        cwd: its working directory.
        log: the file its output goes to (created with its folder).
        env: its environment (default: ours); ``JINA_LOG_LEVEL`` is ``WARNING`` unless set.
        name: what error messages call it ("the service", "the search Flow").
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        log: Path,
        env: dict[str, str] | None = None,
        name: str = "the process",
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.log = log
        self.env = {"JINA_LOG_LEVEL": "WARNING", **(os.environ if env is None else env)}
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessGroup:
        """Start the command; :meth:`wait_until` waits for it to be ready."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` (connection errors count as not ready) until it is true.

        Raises:
            SearchTunerError: the process exited, or was not ready within ``timeout`` seconds
                (it is stopped then); the message ends with the log's tail.
        """
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise SearchTunerError(
                    f"{self.name} exited with status {code}; its log {self.log} ends "
                    f"with:\n{self.tail()}"
                )
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if ready():
                    return
            time.sleep(0.3)
        self.stop()
        raise SearchTunerError(
            f"{self.name} was not ready after {timeout:.0f} s; its log {self.log} ends "
            f"with:\n{self.tail()}"
        )

    @property
    def pid(self) -> int | None:
        """The group leader's process id while started."""
        return None if self.process is None else self.process.pid

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT to the group (a Flow closes its executors), then SIGKILL to whatever of the
        group is left after ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):  # children left in the group, if any
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.process = None

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"
