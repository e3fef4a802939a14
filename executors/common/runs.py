"""Wire forms of the run registry's records, shared by the converter and the trainer."""

from searchtuner.runs import RunEvent, RunRecord
from searchtuner.service.schemas import EventDoc, RunDoc


def run_doc(record: RunRecord) -> RunDoc:
    """A run's record as the document the endpoints answer with."""
    summary = dict(record.summary or {})
    conversion = summary.pop("conversion", {})
    return RunDoc(
        run_id=record.run_id,
        name=record.name or "",
        state=str(record.state),
        reason=record.reason or "",
        created_at=record.created_at,
        updated_at=record.updated_at,
        queued_at=record.queued_at or "",
        started_at=record.started_at or "",
        attempt=record.attempt,
        progress=dict(record.progress or {}),
        model_handle=record.model_handle or "",
        conversion={**conversion, **({"data": summary} if summary else {})},
        request=record.request.model_dump(mode="json"),
    )


def event_doc(run_id: str, event: RunEvent) -> EventDoc:
    """One run event as a document."""
    return EventDoc(
        run_id=run_id,
        seq=event.seq,
        time=event.time,
        type=str(event.type),
        level=event.level,
        message=event.message,
        data=dict(event.data or {}),
    )
