"""A parser of server-sent events (the ``text/event-stream`` format), fed bytes as they arrive.

It follows the WHATWG rules: lines end with CRLF, LF or CR (also split across chunks); a line
starting with ``:`` is a comment (a keep-alive); ``data`` lines of one event are joined with
newlines; an ``id`` line sets the last event id, which a client sends back as
``Last-Event-ID`` when it reconnects; a blank line ends an event, and an event without data
is not dispatched. An event cut off by the end of the stream is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        event: its type (``message`` when the stream named none).
        data: its data lines, joined with ``\\n``.
        id: the last event id when it was dispatched (``""`` if the stream set none).
    """

    event: str
    data: str
    id: str


class SSEParser:
    """Turns chunks of an event stream into events; keeps state across chunks.

    Attributes:
        last_event_id: the id to resume after when reconnecting.
        retry: the reconnection delay the server asked for, in milliseconds, if any.
    """

    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry: int | None = None
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._first_line = True

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse a chunk; return the events it completed."""
        self._buffer += chunk
        events = []
        while True:
            match = _LINE_END.search(self._buffer)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # a CR at the end of the chunk may be the first half of a CRLF
            line = self._buffer[: match.start()].decode("utf-8", errors="replace")
            self._buffer = self._buffer[match.end() :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[ServerSentEvent]:
        """The stream ended: finish a line cut at a final CR; drop an unfinished event."""
        events = self.feed(b"\n") if self._buffer.endswith(b"\r") else []
        self._buffer, self._data, self._event = b"", [], ""
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None  # unknown fields are ignored, as the format asks

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self.last_event_id
        )


def parse_stream(
    chunks: Iterable[bytes], parser: SSEParser | None = None
) -> Iterator[ServerSentEvent]:
    """The events of a whole stream of byte chunks (pass ``parser`` to keep its last id)."""
    state = parser or SSEParser()
    for chunk in chunks:
        yield from state.feed(chunk)
    yield from state.end()
