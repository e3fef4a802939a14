"""Container health check: is the gRPC or HTTP server on this port serving?

The images' ``HEALTHCHECK`` runs it (Kubernetes uses its own gRPC and HTTP probes instead)::

    python /app/scripts/healthcheck.py grpc 127.0.0.1:8080
    python /app/scripts/healthcheck.py http http://127.0.0.1:54322/healthz

``grpc`` asks the standard health service (``grpc.health.v1.Health/Check``, which every jina
server registers) about the whole server; ``http`` expects a 2xx answer. Exit status 0 when
serving, 1 when not (the reason goes to stderr), 2 for bad arguments. It imports only
``grpc``, not jina: a probe that imported jina would take seconds and hundreds of MB each time.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def check_grpc(address: str, timeout: float) -> str | None:
    """None when the server at ``host:port`` answers SERVING, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as err:
            return f"gRPC health check of {address} failed: {err.code().name}"
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return f"{address} answers {name}"
    return None


def check_http(url: str, timeout: float) -> str | None:
    """None when ``url`` answers with a 2xx status, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as err:
        return f"{url} answers HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return f"{url} does not answer: {err}"
    return None if 200 <= status < 300 else f"{url} answers HTTP {status}"


def main(argv: Sequence[str] | None = None) -> int:
    """Check once; see the module docstring for the exit statuses."""
    parser = argparse.ArgumentParser(description="Exit 0 when the server is serving.")
    parser.add_argument("protocol", choices=["grpc", "http"], help="how to ask")
    parser.add_argument("target", help="host:port for grpc, a URL for http")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    if args.protocol == "http" and not args.target.startswith(("http://", "https://")):
        parser.error(f"http needs a URL such as http://127.0.0.1:54322/healthz, not {args.target}")
    check = check_grpc if args.protocol == "grpc" else check_http
    problem = check(args.target, args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
