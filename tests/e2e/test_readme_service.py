"""The README's service examples (```python service blocks) run against the real service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.service import REPO, Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_readme_service_blocks_run(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python service\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "README.md has no service examples"
    monkeypatch.setenv("SEARCHTUNER_URL", service.http)
    monkeypatch.setenv("SEARCHTUNER_TOKEN", service.token)  # what `searchtuner serve` printed
    monkeypatch.chdir(REPO)  # the examples name data/ relative to the repository
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(Path("README.md")), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert "FINISHED" in out
    assert "(1, 384)" in out
    assert 0.0 < float(out[out.index("FINISHED") + 1]) < 1.0  # map@10 after tuning
