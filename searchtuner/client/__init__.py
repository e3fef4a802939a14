"""The Python SDK of the SearchTuner service.

``Client`` talks to a running service (``searchtuner serve``) over HTTP or gRPC with one
interface: upload datasets, start runs with :meth:`Client.fit`, follow them, and fetch the
tuned models. Importing this package never imports jina; only gRPC connections need it.
"""

from searchtuner.client.client import Client, connect
from searchtuner.client.dataset import Dataset
from searchtuner.client.errors import (
    NotFoundError,
    RequestError,
    ServiceError,
    UnavailableError,
    WaitTimeout,
)
from searchtuner.client.formatting import metrics_table
from searchtuner.client.run import Run
from searchtuner.client.transport import TERMINAL_STATES, Transport
from searchtuner.client.urls import DEFAULT_URL, ServiceURL, parse_url

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATES",
    "Client",
    "Dataset",
    "NotFoundError",
    "RequestError",
    "Run",
    "ServiceError",
    "ServiceURL",
    "Transport",
    "UnavailableError",
    "WaitTimeout",
    "connect",
    "metrics_table",
    "parse_url",
]
