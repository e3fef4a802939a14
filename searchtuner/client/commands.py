"""What the client commands of the ``searchtuner`` command line do (the parser is in
:mod:`searchtuner.cli`). Each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from searchtuner.artifacts import ModelHandle
from searchtuner.client.client import Client
from searchtuner.client.formatting import format_table, metrics_table, percent, progress_text
from searchtuner.client.run import Run
from searchtuner.errors import ConfigError

TRAINING_FLAGS = ("epochs", "batch_size", "learning_rate", "loss", "miner", "max_steps")
"""``fit`` options that go into the run's training config under the same name."""
EXIT_INTERRUPTED = 130


def client_of(args: argparse.Namespace) -> Client:
    """The client for the global ``--url`` and ``--token`` options."""
    return Client(args.url, args.token or None)


def json_object(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given on the command line (``{}`` when not given).

    Raises:
        ConfigError: the text is not JSON, or not an object.
    """
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag} is not JSON ({err}); e.g. {flag} '{{\"epochs\": 2}}'") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def training_config(args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` with the training flags given on their own laid over it."""
    config = json_object(args.config, "--config")
    for name in TRAINING_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    return config


def fit(args: argparse.Namespace) -> int:
    """Upload the data, start a run, and (unless --no-wait) follow it to its end."""
    client = client_of(args)
    try:
        run = client.fit(
            args.model,
            args.train_data,
            args.eval_data,
            model_options=json_object(args.model_options, "--model-options"),
            name=args.name,
            onnx=not args.no_onnx,
            data_kind=args.kind,
            progress=True,
            config=training_config(args),
            processes_per_node=args.processes_per_node,
            nnodes=args.nnodes,
        )
    except KeyboardInterrupt:
        print(
            "\ninterrupted while uploading or starting the run; `searchtuner runs` lists runs "
            "that were started",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"run {run.id} started ({run.state})", flush=True)
    if args.no_wait:
        print(f"follow it with: searchtuner logs {run.id} -f")
        return 0
    return follow(run)


def follow(run: Run, out: TextIO | None = None) -> int:
    """Follow a run to its end: state changes, a training progress bar, then the outcome.

    Returns:
        0 when the run FINISHED, 1 when it FAILED or was CANCELLED, 130 on Ctrl-C (the run
        goes on).
    """
    stream = out or sys.stdout
    watcher = _Watcher(stream)
    try:
        for event in run.stream_events():
            watcher.show(event)
    except KeyboardInterrupt:
        watcher.close()
        print(
            f"\nstopped following; run {run.id} goes on in the service.\n"
            f"  follow it again: searchtuner logs {run.id} -f\n"
            f"  see its state:   searchtuner status {run.id}\n"
            f"  stop it:         searchtuner cancel {run.id}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        watcher.close()
    return outcome(run, stream)


class _Watcher:
    """Shows a run's events: one line per state change or warning, a bar for training."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bar: tqdm[Any] | None = None

    def show(self, event: dict[str, Any]) -> None:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "progress":
            self._progress(data)
        elif kind == "state":
            if data.get("state") not in ("TRAINING", None):
                self.close()  # the bar stays as it ended; later lines print below it
            self._line(f"{data.get('state', '?'):<10} {event.get('message', '')}".rstrip())
        elif kind == "log" and event.get("level") in ("warning", "error"):
            self._line(f"{str(event.get('level')).upper()}: {event.get('message', '')}")

    def _progress(self, data: dict[str, Any]) -> None:
        total = data.get("total_steps")
        if self.bar is None:
            self.bar = tqdm(total=total, unit="step", desc="training", file=sys.stderr)
        if total and self.bar.total != total:
            self.bar.total = total
        step = data.get("step")
        if isinstance(step, int):
            self.bar.n = step
        postfix = {}
        if isinstance(data.get("loss"), int | float):
            postfix["loss"] = f"{data['loss']:.4g}"
        if data.get("epochs"):
            postfix["epoch"] = f"{data.get('epoch')}/{data['epochs']}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def outcome(run: Run, out: TextIO) -> int:
    """Print how an ended run ended; its exit status (0 FINISHED, 1 otherwise)."""
    if run.state == "FINISHED":
        metrics = run.metrics()
        table = metrics_table(metrics["before"], metrics["after"])
        if table:
            print("\nretrieval on the evaluation data, before and after fine-tuning:", file=out)
            print(table, file=out)
        print(f"\nrun {run.id} FINISHED\nmodel: {run.model_handle}", file=out)
        print(f"save it with: searchtuner pull {run.id} --output DIR", file=out)
        return 0
    reason = f": {run.reason}" if run.reason else ""
    print(f"run {run.id} {run.state}{reason}", file=sys.stderr)
    return 1


def runs(args: argparse.Namespace) -> int:
    """A table of the caller's runs."""
    found = client_of(args).list_runs()
    if not found:
        print("no runs yet; start one with: searchtuner fit --model NAME --train-data FILE")
        return 0
    rows = [
        [run.id, run.name or "-", run.state, percent(run.progress, run.state), run.created_at[:19]]
        for run in found
    ]
    print(format_table(["id", "name", "state", "progress", "created"], rows, right=(3,)))
    return 0


def status(args: argparse.Namespace) -> int:
    """A run's state, progress, reason, model handle and metrics."""
    run = client_of(args).get_run(args.run)
    rows = [["run", run.id], ["name", run.name or "-"], ["state", run.state]]
    details = progress_text(run.progress)
    rows.append(
        ["progress", percent(run.progress, run.state) + (f" ({details})" if details else "")]
    )
    if run.reason:
        rows.append(["reason", run.reason])
    rows.append(["attempt", str(run.record.get("attempt", 0))])
    rows.append(["created", run.created_at])
    rows.append(["model", run.model_handle or "-"])
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    metrics = run.metrics()
    table = metrics_table(metrics["before"], metrics["after"])
    if table:
        print(f"\n{table}")
    return 0


def logs(args: argparse.Namespace) -> int:
    """A run's log; with -f, new lines as they come until the run ends."""
    run = client_of(args).get_run(args.run)
    if not args.follow:
        print(run.logs(), end="")
        return 0
    try:
        for line in run.stream_logs(follow=True, timeout=None):
            print(line, flush=True)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def cancel(args: argparse.Namespace) -> int:
    """Cancel a run."""
    run = client_of(args).cancel_run(args.run)
    if run.state == "CANCELLED":
        print(f"run {run.id} CANCELLED")
    elif run.is_final:
        print(f"run {run.id} had ended already ({run.state}); nothing to cancel")
    else:
        print(f"run {run.id} is stopping (now {run.state}); it becomes CANCELLED within seconds")
    return 0


def delete(args: argparse.Namespace) -> int:
    """Delete a run and what it stored."""
    client_of(args).delete_run(args.run)
    print(f"run {args.run} deleted")
    return 0


def pull(args: argparse.Namespace) -> int:
    """Save a run's model (or a handle's) as a bundle folder."""
    source = args.source.strip()
    is_handle = source.startswith(("stm", "{"))
    if args.output:
        target = Path(args.output)
    elif is_handle:
        target = Path(f"model-{ModelHandle.parse(source).sha256[:12]}")
    else:
        target = Path(source)
    folder = client_of(args).pull(source, target)
    print(f"saved the model to {folder}")
    print(f"load it with: searchtuner.load_bundle({str(folder)!r})")
    return 0


def datasets(args: argparse.Namespace) -> int:
    """A table of the caller's datasets."""
    found = client_of(args).list_datasets()
    if not found:
        print("no datasets yet; upload one with: searchtuner upload FILE")
        return 0
    rows = [
        [
            d.handle,
            d.name or "-",
            d.kind,
            str(d.n_items),
            "yes" if d.ok else "no",
            d.created_at[:19],
        ]
        for d in found
    ]
    print(format_table(["handle", "name", "kind", "items", "ok", "created"], rows, right=(3,)))
    return 0


def upload(args: argparse.Namespace) -> int:
    """Upload a dataset; print its handle and validation report."""
    dataset = client_of(args).upload(
        args.data, kind=args.kind, name=args.name, batch_size=args.batch_size, progress=True
    )
    print(dataset.report_text.rstrip())
    print(f"\ndataset: {dataset.handle} ({dataset.n_items} items, {dataset.kind})")
    if not dataset.ok:
        print("the data has errors (above); fix them and upload again", file=sys.stderr)
        return 1
    return 0
