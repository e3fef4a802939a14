"""A TCP forwarder on 127.0.0.1 that can play an outage of the server behind it.

Put it in front of moto's S3 server and give the store the proxy's endpoint. While the proxy
is stopped, clients see exactly what they would see if the S3 server itself were down: new
connections are refused (nothing listens on the port) and open ones are reset, while moto
keeps its objects in memory for when the proxy resumes::

    with TcpProxy(s3_endpoint) as proxy:
        store = S3Store(bucket, endpoint_url=proxy.endpoint, ...)
        proxy.outage(10)          # down now, up again 10 s later (in the background)
        store.put_bytes("k", b"x")  # waits and retries through the outage
        proxy.wait_resumed(30)

Each connection is forwarded by two daemon threads (one per direction); every blocking call
has a timeout, so every loop notices a stop within :data:`POLL_S` seconds.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

POLL_S = 0.1
"""Seconds a blocking socket call waits before its loop looks at the stop flags again."""
_BUFFER = 64 * 1024
_JOIN_S = 5.0
# SO_LINGER on, timeout 0: close() sends RST at once, as a crashed server's kernel does for
# connections with unread data, so clients see "connection reset" rather than a tidy EOF.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class TcpProxy:
    """Forwards TCP connections from a port on 127.0.0.1 to ``upstream``.

    The port stays the same across :meth:`stop` and :meth:`resume`, so clients that were
    given :attr:`endpoint` reach the server again once it resumes.

    Args:
        upstream: the server's URL (``http://127.0.0.1:PORT``) or ``host:port``.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``, to give clients instead of the server's URL.
        port: the proxy's port.
        accepted: connections accepted so far.
        dropped: open connections reset by :meth:`stop` so far.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream {upstream!r} needs a host and a port")
        self.upstream = (parts.hostname, parts.port)
        self.port = 0
        self.endpoint = ""
        self.accepted = 0
        self.dropped = 0
        self._lock = threading.Lock()  # guards _listener, _connections, counters
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._up = threading.Event()
        self._timer: threading.Timer | None = None

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Listen (on a free port the first time, on the same port afterwards) and forward."""
        with self._lock:
            if self._listener is not None:
                return self
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listener.settimeout(POLL_S)
            self.port = int(listener.getsockname()[1])
            self.endpoint = f"http://127.0.0.1:{self.port}"
            self._listener = listener
            self._up.set()
            self._accepting = threading.Thread(
                target=self._accept, args=(listener,), name=f"tcp-proxy-{self.port}", daemon=True
            )
            self._accepting.start()
        return self

    def stop(self) -> None:
        """Go down: close the listening socket (connects are refused) and reset open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
            self.dropped += len(connections) // 2  # two sockets per connection
            self._up.clear()
            accepting, self._accepting = self._accepting, None
        if listener is not None:
            listener.close()
        for connection in connections:
            _reset(connection)
        if accepting is not None and accepting is not threading.current_thread():
            accepting.join(timeout=_JOIN_S)

    def resume(self) -> None:
        """Come back up on the same port."""
        self.start()

    def outage(self, seconds: float) -> None:
        """Stop now and resume after ``seconds``, in the background; returns at once."""
        self._cancel_timer()
        self.stop()
        timer = threading.Timer(seconds, self.resume)
        timer.daemon = True
        timer.name = f"tcp-proxy-{self.port}-resume"
        self._timer = timer
        timer.start()

    def wait_resumed(self, timeout: float) -> None:
        """Block until the proxy is up again.

        Raises:
            TimeoutError: it is still down after ``timeout`` seconds.
        """
        if not self._up.wait(timeout):
            raise TimeoutError(f"proxy on port {self.port} still down after {timeout} s")

    @property
    def is_up(self) -> bool:
        """Whether the proxy is listening."""
        return self._up.is_set()

    def close(self) -> None:
        """Stop for good (a pending :meth:`outage` does not resume it)."""
        self._cancel_timer()
        self.stop()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(timeout=_JOIN_S)

    # ---- forwarding ------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        """Accept until ``listener`` is closed by :meth:`stop`."""
        while True:
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)  # the server itself is down: so is the proxy, to the client
                continue
            for sock in (client, server):
                sock.settimeout(None)  # the pumps wait in select(), with a timeout
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    _reset(client)
                    _reset(server)
                    return
                self._connections.update((client, server))
                self.accepted += 1
            pair = _Pair(self, client, server)
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=pair.pump, args=(source, target), name="tcp-proxy-pump", daemon=True
                ).start()

    def _is_open(self, sock: socket.socket) -> bool:
        with self._lock:
            return sock in self._connections

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            mine = [sock for sock in sockets if sock in self._connections]
            self._connections.difference_update(mine)
        for sock in mine:
            _reset(sock)


class _Pair:
    """One forwarded connection: the client's socket and the server's, pumped both ways."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self._finished = 0  # directions that ended tidily
        self._lock = threading.Lock()

    def pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copy bytes from ``source`` to ``target`` until either closes or the proxy stops.

        Waits in ``select`` with a timeout rather than in ``recv``/``send``, so that a stop
        is noticed within :data:`POLL_S` even when a peer neither sends nor reads.
        """
        try:
            while self.proxy._is_open(source):
                readable, _, _ = select.select([source], [], [], POLL_S)
                if not readable:
                    continue
                data = source.recv(_BUFFER)
                if not data:
                    self._half_closed(target)
                    return
                view = memoryview(data)
                while view and self.proxy._is_open(target):
                    _, writable, _ = select.select([], [target], [], POLL_S)
                    if writable:
                        try:
                            view = view[target.send(view, socket.MSG_DONTWAIT) :]
                        except BlockingIOError:
                            continue
        except (OSError, ValueError):
            # Either side went away, or stop() reset them (ValueError: select on a closed
            # socket): end the whole connection.
            self.proxy._forget(self.client, self.server)

    def _half_closed(self, target: socket.socket) -> None:
        """Pass a tidy end of one direction on; close both sockets once both have ended."""
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with self._lock:
            self._finished += 1
            both = self._finished == 2
        if both:
            self.proxy._forget(self.client, self.server)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (see :data:`_RESET_ON_CLOSE`); already closed is fine."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    with contextlib.suppress(OSError):
        sock.close()


def wait_until(what: str, check: Callable[[], object], timeout: float) -> None:
    """Poll ``check()`` every 50 ms until it is truthy.

    Raises:
        TimeoutError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
