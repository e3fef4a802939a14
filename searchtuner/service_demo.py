"""The main job through the service, end to end on this machine (``searchtuner demo``).

Start the service on its embedded default (a local store, a local Flow: gateway, ingest,
converter, trainer, publisher), stream the labelled WordNet dataset in, fine-tune
all-MiniLM-L6-v2 on a worker process, follow it live, show retrieval before and after, pull
the tuned model by its handle and search with it. The service is stopped at the end unless
``keep_serving`` is set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from searchtuner.errors import SearchTunerError
from searchtuner.service.processes import ProcessGroup, free_port

QUERIES = [
    "a domestic animal kept for companionship",
    "move quickly on foot",
    "a feeling of great happiness",
]


class ServiceProcess:
    """``searchtuner serve`` as a child process group, stopped like Ctrl-C."""

    def __init__(self, data_dir: Path, grpc_port: int, http_port: int) -> None:
        from searchtuner.cli import build_parser, serve_command

        self.data_dir = data_dir
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.grpc_port = grpc_port
        self.http_port = http_port
        # Through the CLI's own parser: exactly what `searchtuner serve` would run.
        args = build_parser().parse_args(
            ["serve", "--port", str(grpc_port), "--http-port", str(http_port),
             "--host", "127.0.0.1", "--data-dir", str(data_dir / "store")]
        )  # fmt: skip
        argv, root = serve_command(args)
        self.group = ProcessGroup(argv, cwd=root, log=data_dir / "service.log", name="the service")
        self.token = self._token(data_dir / "store")

    @staticmethod
    def _token(store_dir: Path) -> str:
        """A token of the local owner for the demo (what `searchtuner token create` makes)."""
        from searchtuner.service.tokens import TokenStore
        from searchtuner.store import open_store

        store_dir.mkdir(parents=True, exist_ok=True)
        return TokenStore(open_store(store_dir), cache_seconds=0).create("local", "demo").token

    @property
    def log(self) -> Path:
        """The service's output."""
        return self.group.log

    def start(self, timeout: float = 240.0) -> None:
        """Start the Flow and wait until the gateway answers; raise with the log's tail."""
        import requests

        self.group.start()
        self.group.wait_until(
            lambda: requests.get(f"{self.http_url}/healthz", timeout=2).status_code == 200,
            timeout,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT to the group (the Flow closes its executors), SIGKILL after ``timeout``."""
        self.group.stop(timeout)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the service's output."""
        return self.group.tail(lines)


def run_service_demo(
    data_dir: str | Path = "searchtuner-demo",
    *,
    backbone: str = "all-MiniLM-L6-v2",
    epochs: int = 1,
    keep_serving: bool = False,
    **training: Any,
) -> dict[str, Any]:
    """Run the main job through the service; print each step; return the run's outcome.

    Returns:
        ``{"run_id", "state", "model_handle", "metrics": {"before", "after"}}``.

    Raises:
        SearchTunerError: the service did not start, or the run did not finish.
    """
    import searchtuner
    from searchtuner.client import Client
    from searchtuner.client.commands import follow
    from searchtuner.datasets.wordnet import supersense_data_dir

    start = time.perf_counter()
    folder = Path(data_dir).expanduser().resolve()
    service = ServiceProcess(folder, free_port(), free_port())
    print(f"1. Starting the service (gateway, ingest, converter, trainer, publisher) on {folder}")
    service.start()
    print(
        f"   serving gRPC on 127.0.0.1:{service.grpc_port}, HTTP on {service.http_url} "
        f"(API docs: {service.http_url}/docs) after {time.perf_counter() - start:.0f} s"
    )
    try:
        client = Client(service.http_url, token=service.token)
        data = supersense_data_dir()
        print("\n2. Streaming the labelled WordNet dataset in (definition -> supersense)")
        train = client.upload(data / "train.csv", kind="labeled", name="train", progress=True)
        test = client.upload(data / "test.csv", kind="labeled", name="held-out", progress=True)
        print(f"   train: {train.n_items:,} items, handle {train.handle}")
        print(f"   held-out: {test.n_items:,} items, handle {test.handle}")
        print("   " + train.report_text.replace("\n", "\n   "))

        print(f"\n3. Fine-tuning {backbone} on a trainer worker ({epochs} epoch(s))")
        run = client.fit(
            backbone,
            train,
            test,
            model_options={"max_length": 64},
            name="demo",
            epochs=epochs,
            **training,
        )
        print(f"   run {run.id} is {run.state}; live progress:")
        code = follow(run)
        if code != 0:
            raise SearchTunerError(f"run {run.id} ended {run.state}: {run.reason}")
        metrics = run.metrics()

        print("\n4. Pulling the tuned model by its handle and searching with it")
        bundle = run.save_artifact(folder / "models" / run.id)
        model = searchtuner.load_bundle(bundle)
        print(f"   bundle saved to {bundle}")
        _search(model, _rows(data / "test.csv"))

        from searchtuner.search_demo import run_search_demo

        print(f"\n5. Searching in the search Flow: pretrained {backbone} against the tuned model")
        search = run_search_demo(bundle, folder / "search", backbone=backbone)
        print(f"\nDone in {time.perf_counter() - start:.0f} s.")
        return {
            "run_id": run.id,
            "state": run.state,
            "model_handle": run.model_handle,
            "metrics": metrics,
            "search": search,
        }
    finally:
        if keep_serving:
            print(
                f"\nThe service keeps running (pid {service.group.pid}); its token for owner "
                f"'local': export SEARCHTUNER_TOKEN={service.token}"
            )
        else:
            service.stop()


def _rows(path: Path) -> list[tuple[str, str]]:
    """``(definition, supersense)`` rows of a WordNet CSV split."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle)]


def _search(model: Any, rows: list[tuple[str, str]], k: int = 3) -> None:
    import searchtuner

    corpus = searchtuner.encode(model, [text for text, _ in rows], batch_size=64)
    queries = searchtuner.encode(model, QUERIES)
    scores = np.asarray(queries) @ np.asarray(corpus).T
    for query, row in zip(QUERIES, scores, strict=True):
        print(f"   query: {query!r}")
        for index in np.argsort(-row)[:k]:
            text, label = rows[int(index)]
            print(f"     {row[index]:.3f}  [{label}] {text[:70]}")
