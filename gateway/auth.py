"""Tokens and request sizes at the gateway, for HTTP and gRPC alike.

Every request except health checks must carry a token: ``Authorization: Bearer <token>`` over
HTTP, ``authorization: Bearer <token>`` metadata over gRPC. The gateway refuses a request
without a valid one (401 / ``UNAUTHENTICATED``) before it reaches an executor, then writes the
token into the request's ``parameters["token"]`` — replacing anything the client put there —
and every executor resolves it to its owner again (:func:`searchtuner.service.owners.owner_of`).
Requests larger than ``SEARCHTUNER_MAX_REQUEST_BYTES`` are refused (413 /
``RESOURCE_EXHAUSTED``); HTTP dataset uploads stream and are bounded by the dataset limit.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from starlette.concurrency import run_in_threadpool

from searchtuner.service.limits import Limits, env_name, human_bytes
from searchtuner.service.owners import TOKEN_PARAMETER, token_store
from searchtuner.service.tokens import Unauthenticated

OPEN_HTTP_PATHS = frozenset(
    {"/", "/healthz", "/dry_run", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
"""Health checks and the API's description: answered without a token."""
STREAMED_HTTP_PATHS = frozenset({"/datasets"})
"""Bodies that stream to the store (bounded by the dataset limits, not the request limit)."""
OPEN_GRPC_METHODS = frozenset(
    {
        "/jina.JinaGatewayDryRunRPC/dry_run",
        "/jina.JinaInfoRPC/_status",
        "/jina.JinaDiscoverEndpointsRPC/endpoint_discovery",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
"""Health checks, the Flow's description and reflection: answered without a token."""

REQUEST_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "searchtuner_request_token", default=None
)
"""The authenticated token of the HTTP request being served (set by :class:`HttpAuth`)."""


def bearer(value: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def with_token(parameters: Mapping[str, Any] | None, token: str | None) -> dict[str, Any]:
    """``parameters`` with the authenticated token in place of any the client sent."""
    result = {k: v for k, v in (parameters or {}).items() if k != TOKEN_PARAMETER}
    if token:
        result[TOKEN_PARAMETER] = token
    return result


def _resolve(token: str | None) -> str:
    return token_store().resolve(token)


def too_large_message(size: int, limit: int) -> str:
    return (
        f"the request is {human_bytes(size)}, more than the {human_bytes(limit)} one request may "
        f"carry ({env_name('max_request_bytes')}): send the documents in smaller requests "
        "(e.g. a lower request_size), or upload large datasets with POST /datasets"
    )


# --- HTTP -------------------------------------------------------------------------------------


class TokenStreamer:
    """The gateway's streamer, adding the request's authenticated token to every call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def stream_docs(self, *args: Any, parameters: Any = None, **kwargs: Any) -> Any:
        return self._inner.stream_docs(
            *args, parameters=with_token(parameters, REQUEST_TOKEN.get()), **kwargs
        )


class HttpAuth:
    """ASGI middleware: a valid token on every request but health checks; bounded bodies."""

    def __init__(self, app: Any, limits: Limits | None = None) -> None:
        self.app = app
        self.limits = limits or Limits.from_env()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_HTTP_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        token = bearer(headers.get(b"authorization"))
        try:
            await run_in_threadpool(_resolve, token)
        except Unauthenticated as err:
            await _answer(send, 401, "Unauthenticated", str(err), {"www-authenticate": "Bearer"})
            return
        if scope["method"] in {"POST", "PUT", "PATCH"} and scope["path"] not in STREAMED_HTTP_PATHS:
            limit = self.limits.max_request_bytes
            declared = _int(headers.get(b"content-length"))
            if declared is not None and declared > limit:
                await _answer(send, 413, "TooLarge", too_large_message(declared, limit))
                return
            body = await _read_body(receive, limit)
            if body is None:
                await _answer(send, 413, "TooLarge", too_large_message(limit + 1, limit))
                return
            receive = _replay(body, receive)
        reset = REQUEST_TOKEN.set(token)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_TOKEN.reset(reset)


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None once it grows past ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())  # after the body: wait for the disconnect

    return replay


async def _answer(
    send: Any, status: int, error: str, detail: str, extra: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- gRPC -------------------------------------------------------------------------------------


class GrpcAuth(grpc.aio.ServerInterceptor):
    """A valid token in the metadata for every call but health checks; bounded messages.

    Data calls (jina's ``Call``, ``process_single_data``, ...) get the token written into
    each request's parameters, replacing what the client sent there.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_env()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in OPEN_GRPC_METHODS:
            return handler
        metadata: Iterable[tuple[str, Any]] = handler_call_details.invocation_metadata or ()
        token = next((bearer(v) for k, v in metadata if k.lower() == "authorization"), None)
        return _guarded(handler, token, self.limits.max_request_bytes)


def _guarded(handler: grpc.RpcMethodHandler, token: str | None, limit: int) -> Any:
    """``handler`` with the token checked first and stamped on every request."""

    async def authenticate(context: grpc.aio.ServicerContext) -> None:
        try:
            await run_in_threadpool(_resolve, token)
        except Unauthenticated as err:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))

    async def stamp(request: Any, context: grpc.aio.ServicerContext) -> Any:
        size = _size(request)
        if size is not None and size > limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, too_large_message(size, limit))
        wo_data = getattr(request, "proto_wo_data", None)
        if wo_data is not None and token:
            wo_data.parameters[TOKEN_PARAMETER] = token
        return request

    async def stamped(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            yield await stamp(request, context)

    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await authenticate(context)
            return await inner_uu(await stamp(request, context), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await authenticate(context)
            async for response in inner_us(await stamp(request, context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )

    async def first_then_rest(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        # The refusal waits for the client's first message: aborting before the client has
        # sent it races the client's send, which then reports INTERNAL instead of the status.
        iterator = aiter(requests)
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            await authenticate(context)
            return _empty()
        await authenticate(context)

        async def rest() -> AsyncIterator[Any]:
            yield first
            async for request in iterator:
                yield request

        return stamped(rest(), context)

    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            return await inner_su(await first_then_rest(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        async for response in inner_ss(await first_then_rest(requests, context), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )


async def _empty() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing


def _size(request: Any) -> int | None:
    """A jina request's size on the wire, without parsing its documents."""
    buffer = getattr(request, "buffer", None)
    if isinstance(buffer, bytes | bytearray):
        return len(buffer)
    proto = getattr(request, "_pb_body", None)
    return proto.ByteSize() if proto is not None and hasattr(proto, "ByteSize") else None
