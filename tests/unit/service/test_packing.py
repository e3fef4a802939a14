"""Packed upload batches: rows survive the trip, and hostile batches are refused."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import pytest

from searchtuner.data.readers import iter_records
from searchtuner.errors import ConfigError, DataError
from searchtuner.service import packing
from searchtuner.service.packing import csv_chunks, jsonl_chunks, pack, unpack
from searchtuner.service.schemas import PackedBatch


def test_csv_chunks_keep_quoted_newlines_and_repeat_the_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    rows = [("line one\nline two", "a"), ('a "quoted" comma, here', "b"), ("plain", "a")]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    chunks = list(csv_chunks(path, 2))
    assert [count for _, count in chunks] == [2, 1]
    back = []
    for number, (data, count) in enumerate(chunks):
        batch = pack(data, "csv", count)
        folder = tmp_path / f"chunk{number}"
        folder.mkdir()
        back += [(r.doc.text, r.doc.label) for r in iter_records(unpack(batch, folder))]
    assert back == rows


def test_jsonl_chunks_skip_blank_lines_and_end_every_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}')
    chunks = list(jsonl_chunks(path, 5))
    assert chunks == [(b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', 2)]


def test_an_empty_csv_says_it_needs_a_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="header"):
        list(csv_chunks(path, 10))


def test_unknown_formats_and_data_that_is_not_zlib_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jsonl"):
        pack(b"x", "parquet", 1)
    with pytest.raises(ConfigError, match="format"):
        unpack(PackedBatch(format="xml", data=zlib.compress(b"x")), tmp_path)
    with pytest.raises(ConfigError, match="not zlib"):
        unpack(PackedBatch(format="csv", data=b"plain bytes"), tmp_path)


def test_a_decompression_bomb_stops_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packing, "MAX_UNPACKED_BYTES", 1000)
    bomb = PackedBatch(format="jsonl", data=zlib.compress(b"\n" * 100_000))
    with pytest.raises(ConfigError, match="smaller batches"):
        unpack(bomb, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
