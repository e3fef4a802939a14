"""A Flow in a process of its own, for tests that serve executors through a real Flow.

A Flow forks its executors from the process that starts it, and gRPC does not survive a
fork made after gRPC work in the parent (a segfault, seen in CI). By the time the executor
tests run, the pytest process has used gRPC clients, so it never starts a Flow itself:
:func:`hosted_flow` writes the Flow's YAML and starts ``python -m tests.flow_host`` in a
session of its own, which loads and serves it; the test talks to its port.

    python -m tests.flow_host [--import MODULE]... FLOW.yml
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from searchtuner.service.processes import ProcessGroup

if TYPE_CHECKING:
    from jina import Flow

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 240.0  # executors load real models; 2 loaded cores are slow


@contextmanager
def hosted_flow(flow: Flow, folder: Path, imports: Sequence[str] = ()) -> Iterator[int]:
    """Serve ``flow`` from a child process until the block ends; yield its gRPC port.

    ``imports`` are modules the child imports first: the ones that define executor classes
    the YAML names (``uses: Probe``). The child's output goes to ``folder/flow.log``; a
    Flow that exits or is not ready in time raises with the log's tail.
    """
    from jina import Client

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "flow.yml"
    flow.save_config(str(config))
    argv = [sys.executable, "-m", "tests.flow_host"]
    for module in imports:
        argv += ["--import", module]
    group = ProcessGroup([*argv, str(config)], cwd=REPO, log=folder / "flow.log", name="the Flow")
    port = int(flow.port)
    client = Client(host=f"grpc://127.0.0.1:{port}")
    group.start()
    try:
        group.wait_until(lambda: bool(client.is_flow_ready(timeout=5)), READY_TIMEOUT_S)
        yield port
    finally:
        group.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.flow_host", description=__doc__)
    parser.add_argument("--import", dest="imports", action="append", default=[])
    parser.add_argument("config", type=Path, help="the Flow's YAML")
    args = parser.parse_args(argv)
    for module in args.imports:
        importlib.import_module(module)
    from jina import Flow

    with Flow.load_config(str(args.config)) as flow:
        flow.block()


if __name__ == "__main__":
    main()
