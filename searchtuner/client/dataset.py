"""A dataset stored in the service: its handle and validation report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from searchtuner.service.schemas import DatasetDoc


@dataclass(frozen=True)
class Dataset:
    """A stored dataset; any number of runs can train or evaluate on its handle.

    Attributes:
        handle: ``std1:<id>``, to pass as ``train_data``/``eval_data``.
        name: the name given when uploading, or ``""``.
        kind: ``labeled``, ``pairs``, ``text_image`` or ``unlabeled``.
        n_items: how many items it holds.
        created_at: when it was stored (ISO 8601 UTC).
        ok: whether validation found no errors.
        report: the validation report (``DataReport.to_dict()``).
        report_text: the report, formatted for people.
    """

    handle: str
    name: str = ""
    kind: str = ""
    n_items: int = 0
    created_at: str = ""
    ok: bool = True
    report: dict[str, Any] = field(default_factory=dict)
    report_text: str = ""

    @classmethod
    def from_doc(cls, doc: DatasetDoc) -> Dataset:
        """The dataset a service answer describes."""
        return cls(
            handle=doc.handle,
            name=doc.name,
            kind=doc.kind,
            n_items=doc.n_items,
            created_at=doc.created_at,
            ok=doc.ok,
            report=dict(doc.report),
            report_text=doc.report_text,
        )

    def __str__(self) -> str:
        return self.handle
