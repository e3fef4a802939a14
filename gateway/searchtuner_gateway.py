"""The SearchTuner gateway: jina's gRPC gateway and an HTTP gateway with REST routes, at once.

Jina serves one custom gateway class on one protocol, so this is a composite: for each
``protocol``/``port`` pair of the Flow it starts jina's own gRPC gateway or
:class:`SearchTunerHTTPGateway`, which keeps jina's HTTP routes (``POST /<endpoint>`` with
DocList JSON, ``/docs``) and adds the REST API in :mod:`gateway.rest` on top.
"""

import sys
from pathlib import Path
from typing import Any

from jina.serve.runtimes.gateway.gateway import BaseGateway
from jina.serve.runtimes.gateway.grpc import GRPCGateway
from jina.serve.runtimes.gateway.http import HTTPGateway
from jina.serve.runtimes.servers.composite import CompositeBaseServer

try:
    from gateway.auth import GrpcAuth, HttpAuth, TokenStreamer
    from gateway.rest import add_rest_routes
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gateway.auth import GrpcAuth, HttpAuth, TokenStreamer
    from gateway.rest import add_rest_routes


class SearchTunerHTTPGateway(HTTPGateway):
    """Jina's HTTP gateway plus the SearchTuner REST API (runs, datasets, models), behind
    tokens (:class:`gateway.auth.HttpAuth`)."""

    @property
    def app(self) -> Any:
        """Jina's FastAPI app with the REST routes added (built anew on each access)."""
        handler = self._request_handler
        if not isinstance(handler.streamer, TokenStreamer):
            handler.streamer = TokenStreamer(handler.streamer)
            self.streamer = handler.streamer
        app = super().app
        app.title = "SearchTuner"
        app.description = (
            "Fine-tune pretrained models into embedding models for neural search: upload "
            "datasets, start runs, follow them, pull the tuned models."
        )
        add_rest_routes(app, self.streamer, self.logger)
        app.add_middleware(HttpAuth)
        return app


class SearchTunerGRPCGateway(GRPCGateway):
    """Jina's gRPC gateway behind tokens (:class:`gateway.auth.GrpcAuth`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grpc_tracing_server_interceptors = [
            GrpcAuth(),
            *(self.grpc_tracing_server_interceptors or []),
        ]


class SearchTunerGateway(CompositeBaseServer, BaseGateway):
    """gRPC (jina's) and HTTP (jina's + REST) on the Flow's ports, one server per protocol."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.servers = []
        for server_kwargs in self._server_kwargs:
            protocol = str(server_kwargs["runtime_args"]["protocol"]).lower()
            if "http" in protocol:
                self.servers.append(SearchTunerHTTPGateway(**server_kwargs))
            elif "grpc" in protocol:
                self.servers.append(SearchTunerGRPCGateway(**server_kwargs))
            else:
                raise ValueError(
                    f"the SearchTuner gateway serves grpc and http, not {protocol!r}: set the "
                    "Flow's protocol to [grpc, http] (or one of them)"
                )
        self.gateways = self.servers  # what jina's own composite calls them
