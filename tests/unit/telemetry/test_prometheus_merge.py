"""merge_expositions: the processes' Prometheus texts as one, each sample labelled by source."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from searchtuner.errors import DataError
from searchtuner.telemetry.prometheus import merge_expositions

INGEST = """# HELP searchtuner_ingest_documents_total Documents stored.
# TYPE searchtuner_ingest_documents_total counter
searchtuner_ingest_documents_total 12.0
# HELP shared_seconds Time.
# TYPE shared_seconds histogram
shared_seconds_bucket{le="0.1"} 1.0
shared_seconds_bucket{le="+Inf"} 2.0
shared_seconds_count 2.0
shared_seconds_sum 0.5
"""
TRAINER = """# HELP searchtuner_runs Runs by state.
# TYPE searchtuner_runs gauge
searchtuner_runs{state="QUEUED"} 2.0
# HELP shared_seconds Time.
# TYPE shared_seconds histogram
shared_seconds_bucket{le="0.1"} 0.0
shared_seconds_bucket{le="+Inf"} 1.0
shared_seconds_count 1.0
shared_seconds_sum 3.0
"""


def test_each_family_once_with_a_service_label_on_every_sample() -> None:
    merged = merge_expositions({"ingest": INGEST, "trainer": TRAINER})
    families = list(text_string_to_metric_families(merged))  # valid Prometheus text
    assert [f.name for f in families] == [
        "searchtuner_ingest_documents",
        "shared_seconds",
        "searchtuner_runs",
    ]
    assert merged.count("# TYPE shared_seconds histogram") == 1
    shared = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families[1].samples}
    assert shared[("shared_seconds_count", (("service", "ingest"),))] == 2.0
    assert shared[("shared_seconds_count", (("service", "trainer"),))] == 1.0
    assert shared[("shared_seconds_bucket", (("le", "0.1"), ("service", "trainer")))] == 0.0
    assert 'searchtuner_ingest_documents_total{service="ingest"} 12.0' in merged
    assert 'searchtuner_runs{service="trainer",state="QUEUED"} 2.0' in merged


def test_nothing_merges_to_nothing() -> None:
    assert merge_expositions({}) == ""
    assert merge_expositions({"publisher": ""}) == ""


def test_text_that_is_not_prometheus_names_its_source() -> None:
    with pytest.raises(DataError, match="the metrics of trainer are not Prometheus text"):
        merge_expositions({"trainer": "searchtuner_runs{state=QUEUED 1\n"})
