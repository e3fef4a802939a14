"""The service's errors, from HTTP bodies and from gRPC statuses, become the same SDK errors."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from jina.excepts import BadServer
from jina.proto import jina_pb2

from searchtuner.client import (
    NotFoundError,
    RequestError,
    ServiceError,
    UnavailableError,
)
from searchtuner.client.errors import (
    error_from_body,
    error_from_status,
    service_error,
    unavailable,
)
from searchtuner.client.grpc_transport import GrpcTransport, grpc_error
from searchtuner.client.urls import parse_url
from searchtuner.errors import SearchTunerError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, RequestError),
        (404, NotFoundError),
        (409, RequestError),
        (413, RequestError),
        (415, RequestError),
        (422, RequestError),
        (503, UnavailableError),
        (500, ServiceError),
        (502, ServiceError),
    ],
)
def test_the_status_picks_the_class(status: int, cls: type[ServiceError]) -> None:
    err = service_error(status, "SomeError", "what to fix")
    assert type(err) is cls
    assert isinstance(err, SearchTunerError)  # the CLI reports every one as `error: ...`
    assert (err.status, err.error, str(err)) == (status, "SomeError", "what to fix")


def test_a_searchtuner_error_body_gives_name_and_detail() -> None:
    body = {"error": "RunNotFound", "detail": "no run run-x; list runs with GET /runs"}
    err = error_from_body(404, body, "GET http://h/runs/run-x")
    assert isinstance(err, NotFoundError)
    assert err.error == "RunNotFound"
    assert str(err) == "no run run-x; list runs with GET /runs"


def test_a_conflict_is_a_request_error() -> None:
    body = {"error": "InvalidTransition", "detail": "run is FINISHED and has no model yet"}
    err = error_from_body(409, body, "GET http://h/runs/r/model")
    assert isinstance(err, RequestError) and err.status == 409


def test_fastapi_validation_errors_name_the_fields() -> None:
    body = {
        "detail": [
            {"loc": ["body", "model"], "msg": "Field required", "type": "missing"},
            {"loc": ["query", "batch_size"], "msg": "Input should be an integer"},
        ]
    }
    err = error_from_body(422, body, "POST http://h/runs")
    assert isinstance(err, RequestError)
    assert "model: Field required" in str(err)
    assert "query.batch_size: Input should be an integer" in str(err)


def test_an_answer_from_something_else_says_so() -> None:
    err = error_from_body(404, {"detail": "Not Found"}, "GET http://h/runs")
    assert isinstance(err, NotFoundError)
    assert "GET http://h/runs answered 404: Not Found" in str(err)
    assert "SearchTuner service?" in str(err)
    err = error_from_body(502, "<html>Bad Gateway</html>", "GET http://h/runs")
    assert type(err) is ServiceError and "Bad Gateway" in str(err)


def _header(name: str, *args: str, description: str = "") -> jina_pb2.HeaderProto:
    header = jina_pb2.HeaderProto()
    header.status.code = jina_pb2.StatusProto.ERROR
    header.status.description = description
    header.status.exception.name = name
    header.status.exception.args.extend(args)
    return header


def test_a_jina_error_status_maps_like_the_rest_api() -> None:
    header = _header("RunNotFound", "no run run-x for this owner; check the id")
    err = grpc_error(BadServer(header).args[0])
    assert isinstance(err, NotFoundError)
    assert (err.status, err.error) == (404, "RunNotFound")
    assert str(err) == "no run run-x for this owner; check the id"


@pytest.mark.parametrize(
    ("name", "cls", "status"),
    [
        ("InvalidRequest", RequestError, 400),
        ("ConfigError", RequestError, 400),
        ("DataError", RequestError, 400),
        ("InvalidTransition", RequestError, 409),
        ("RunIsLive", RequestError, 409),
        ("DatasetNotFound", NotFoundError, 404),
        ("StoreUnavailable", UnavailableError, 503),
        ("ZeroDivisionError", ServiceError, 500),
    ],
)
def test_each_executor_error_gets_its_status(
    name: str, cls: type[ServiceError], status: int
) -> None:
    err = grpc_error(SimpleNamespace(header=_header(name, "message")))  # a whole response
    assert type(err) is cls and err.status == status and err.error == name


def test_without_arguments_the_description_is_the_message() -> None:
    err = grpc_error(_header("StoreUnavailable", description="the store did not answer"))
    assert str(err) == "the store did not answer"
    assert str(error_from_status("Oops", [], "")) == "Oops"


def test_an_unreadable_error_payload_is_still_an_error() -> None:
    err = grpc_error(None)
    assert type(err) is ServiceError and err.status == 500


def test_unavailable_names_the_url_and_how_to_start_the_service() -> None:
    err = unavailable("http://127.0.0.1:9", "Connection refused")
    assert isinstance(err, UnavailableError) and err.status == 503
    assert "http://127.0.0.1:9" in str(err)
    assert "Connection refused" in str(err)
    assert "searchtuner serve" in str(err)


class _FakeJina:
    """Stands in for jina's Client: answers each post with an error response, or raises."""

    def __init__(self, raises: Exception | None = None) -> None:
        self.raises = raises
        self.posts: list[dict[str, object]] = []

    def post(self, on: str, inputs: Iterable[Any], on_error: Any, **options: Any) -> Any:
        self.posts.append({"on": on, **options})
        if self.raises is not None:
            raise self.raises
        list(inputs)  # jina sends the whole stream
        on_error(SimpleNamespace(header=_header("RunNotFound", "no run x")))
        return options["return_type"]()


def test_grpc_calls_carry_the_token_and_map_error_answers() -> None:
    transport = GrpcTransport(parse_url("grpc://127.0.0.1:1"), "secret", timeout=5)
    transport._jina = fake = _FakeJina()
    with pytest.raises(NotFoundError, match="no run x"):
        transport.get_run("x")
    assert fake.posts[0]["on"] == "/runs/get"
    # The token travels as metadata (the gateway checks it), never in the parameters.
    assert fake.posts[0]["metadata"] == (("authorization", "Bearer secret"),)
    assert "token" not in fake.posts[0]["parameters"]
    assert fake.posts[0]["timeout"] == 5


def test_grpc_calls_without_a_token_send_no_authorization() -> None:
    transport = GrpcTransport(parse_url("grpc://127.0.0.1:1"), None, timeout=5)
    transport._jina = fake = _FakeJina()
    with pytest.raises(NotFoundError):
        transport.get_run("x")
    assert fake.posts[0]["metadata"] == ()
    assert "token" not in fake.posts[0]["parameters"]


class _GatewayRefusal(grpc.RpcError):
    """What grpc raises when the gateway answers a call with an error status of its own."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, 401, "Unauthenticated"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "TooLarge"),
    ],
)
def test_grpc_gateway_refusals_become_request_errors(
    code: grpc.StatusCode, status: int, error: str
) -> None:
    transport = GrpcTransport(parse_url("grpc://127.0.0.1:1"), "wrong", timeout=5)
    transport._jina = _FakeJina(_GatewayRefusal(code, "the gateway says no: here is why"))

    with pytest.raises(RequestError, match="the gateway says no: here is why") as caught:
        transport.list_runs()

    assert (caught.value.status, caught.value.error) == (status, error)


def test_other_grpc_failures_stay_service_errors() -> None:
    transport = GrpcTransport(parse_url("grpc://127.0.0.1:1"), "secret", timeout=5)
    transport._jina = _FakeJina(_GatewayRefusal(grpc.StatusCode.INTERNAL, "boom"))

    with pytest.raises(ServiceError) as caught:
        transport.list_runs()

    assert caught.value.status == 502 and not isinstance(caught.value, RequestError)


def test_grpc_connection_failures_are_unavailable() -> None:
    transport = GrpcTransport(parse_url("grpc://127.0.0.1:1"), None, timeout=5)
    transport._jina = _FakeJina(ConnectionError("gRPC error: StatusCode.UNAVAILABLE\nmore"))
    with pytest.raises(UnavailableError, match=r"grpc://127.0.0.1:1 \(gRPC error: StatusCode"):
        transport.list_runs()
