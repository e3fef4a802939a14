"""The server-sent events parser, on captured streams cut at every possible byte."""

from __future__ import annotations

import json

import pytest

from searchtuner.client.sse import ServerSentEvent, SSEParser, parse_stream

# What GET /runs/{id}/events sends (gateway/rest.py), with a keep-alive comment, an event
# whose data spans lines, and the closing ``end`` event.
CAPTURED = (
    b": connected\n\n"
    b'id: 1\nevent: state\ndata: {"seq": 1, "type": "state", "data": {"state": "QUEUED"}}\n\n'
    b": keep-alive\n"
    b'id: 2\nevent: log\ndata: {"seq": 2,\ndata:  "type": "log"}\n\n'
    b'event: end\ndata: {"state": "FINISHED"}\n\n'
)


def _events(stream: bytes, cut: int) -> list[ServerSentEvent]:
    chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    return list(parse_stream(chunks))


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 64, 10_000])
def test_a_captured_stream_parses_the_same_however_it_is_cut(cut: int) -> None:
    events = _events(CAPTURED, cut)
    assert [e.event for e in events] == ["state", "log", "end"]
    assert [e.id for e in events] == ["1", "2", "2"]  # the id stays until a new one is sent
    assert json.loads(events[0].data)["data"] == {"state": "QUEUED"}
    # data lines join with a newline; only one space after the colon is dropped
    assert events[1].data == '{"seq": 2,\n "type": "log"}'
    assert json.loads(events[1].data) == {"seq": 2, "type": "log"}


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
@pytest.mark.parametrize("cut", [1, 5, 1000])
def test_every_line_ending_works_across_chunks(newline: bytes, cut: int) -> None:
    stream = CAPTURED.replace(b"\n", newline)
    events = _events(stream, cut)
    assert [e.event for e in events] == ["state", "log", "end"]
    assert events[1].data == '{"seq": 2,\n "type": "log"}'


def test_comments_and_events_without_data_dispatch_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b": ping\n\n: ping\n\nevent: lonely\n\n") == []
    assert parser.feed(b"data: x\n\n") == [ServerSentEvent("message", "x", "")]


def test_ids_are_kept_for_reconnecting() -> None:
    parser = SSEParser()
    parser.feed(b"id: 41\ndata: a\n\n")
    assert parser.last_event_id == "41"
    parser.feed(b"id: 42\n\n")  # an id alone moves the last id, without an event
    assert parser.last_event_id == "42"
    parser.feed(b"id: 4\x003\ndata: b\n\n")  # an id with NUL is ignored, as the format says
    assert parser.last_event_id == "42"
    parser.feed(b"retry: 2500\nretry: soon\n")
    assert parser.retry == 2500


def test_field_forms_and_unknown_fields() -> None:
    events = list(
        parse_stream([b"\xef\xbb\xbfdata:tight\nfoo: bar\ndata\n\nevent:x\ndata: y \n\n"])
    )
    assert events == [
        ServerSentEvent("message", "tight\n", ""),  # "data" alone adds an empty line
        ServerSentEvent("x", "y ", ""),
    ]


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    assert list(parse_stream([b"data: complete\n\ndata: cut"])) == [
        ServerSentEvent("message", "complete", "")
    ]
    # a final CR still ends its line
    assert [e.data for e in parse_stream([b"data: cr\r\r"])] == ["cr"]
