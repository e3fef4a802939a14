"""What telemetry costs while it is off (the default): the hooks on the service's paths, timed.

Each hook runs ``--calls`` times in this process, with no tracer provider installed and no
telemetry settings in the environment, as in a service started without ``--otlp-endpoint`` or
``--metrics``; the best of ``--rounds`` rounds is reported, in microseconds per call:

- ``span``: ``searchtuner.telemetry.span`` around a block (``publish_checkpoint`` does this);
- ``run_trace``: a worker attempt's ``RunTrace``: start, five state changes, end;
- ``executor_span``: ``ExecutorTelemetry.span`` with jina's tracer absent (each traced endpoint);
- ``carrier``: ``current_carrier`` once jina has imported the OpenTelemetry API (the trainer's
  ``/runs/create``, once per run).

It also checks that the core hooks never import OpenTelemetry while off.

    python benchmarks/telemetry_off.py [--calls 100000] [--rounds 5]

One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """The best time per call, in microseconds, of ``rounds`` rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--calls", type=int, default=100_000)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()

    from searchtuner.runs.records import RunRecord, utc_now
    from searchtuner.runs.request import RunRequest
    from searchtuner.runs.states import RunState
    from searchtuner.telemetry import span
    from searchtuner.telemetry.run_trace import RunTrace

    now = utc_now()
    request = RunRequest(model="mlp", train_data="std1:" + "a" * 64)
    record = RunRecord(
        run_id="run-20260101000000-abcdef", owner="local", state=RunState.QUEUED,
        created_at=now, updated_at=now, request=request,
    )  # fmt: skip
    states = [
        record.model_copy(update={"state": s})
        for s in (RunState.PREPARING, RunState.TRAINING, RunState.EVALUATING,
                  RunState.PUBLISHING, RunState.FINISHED)
    ]  # fmt: skip

    def one_span() -> None:
        with span("searchtuner.publish", {"searchtuner.onnx": False}):
            pass

    def one_attempt() -> None:
        run_trace = RunTrace(record).start()
        for changed in states:
            run_trace.phase(changed)
        run_trace.end()

    results = {
        "span": best_us(one_span, args.calls, args.rounds),
        "run_trace": best_us(one_attempt, args.calls // 10, args.rounds),
    }
    results["opentelemetry_imported_by_core_hooks"] = any(
        name.startswith("opentelemetry") for name in sys.modules
    )

    from executors.common.telemetry import ExecutorTelemetry  # imports jina, as executors do
    from searchtuner.telemetry import current_carrier

    telemetry = ExecutorTelemetry("bench")
    assert telemetry.metrics is None, "unset SEARCHTUNER_METRICS / SEARCHTUNER_OTLP_ENDPOINT"

    def executor_span() -> None:
        with telemetry.span("searchtuner.queue", None):
            pass

    import opentelemetry.trace  # noqa: F401 - what jina's executor runtime has imported

    results["executor_span"] = best_us(executor_span, args.calls, args.rounds)
    results["carrier"] = best_us(current_carrier, args.calls, args.rounds)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
