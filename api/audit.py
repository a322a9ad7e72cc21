"""For auditors: the transition log, read a page at a time, exported, and verified."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.deps import ServicesDep, require
from api.tokens import Principal
from models.audit import verify_chain
from models.audit_export import AuditFilter, export, page
from models.db import make_session_factory

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(require("auditor"))]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "fhir": "application/fhir+ndjson",
}


def audit_filter(
    since: Annotated[datetime | None, Query(description="recorded at or after")] = None,
    until: Annotated[datetime | None, Query(description="recorded before")] = None,
    episode: str | None = None,
    actor: str | None = None,
    rule: Annotated[str | None, Query(description="a rule ID, e.g. IMG-NO-EARLY")] = None,
) -> AuditFilter:
    return AuditFilter(since, until, episode, actor, rule)


Filter = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("/transitions", summary="Audit rows, filtered, a page at a time")
def transitions(
    parts: ServicesDep,
    _: Auditor,
    where: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page")
    ] = 0,
) -> dict[str, Any]:
    rows, next_cursor = page(parts.engine, where, cursor, limit)
    return {"items": rows, "next_cursor": next_cursor}


@router.get(
    "/export", summary="The log as CSV, JSON lines or FHIR AuditEvents, ending with the chain head"
)
def export_log(
    parts: ServicesDep,
    _: Auditor,
    where: Filter,
    format: Annotated[str, Query(pattern="^(csv|jsonl|fhir)$")] = "jsonl",  # noqa: A002
) -> StreamingResponse:
    """Streamed in batches, so memory stays flat however long the log is. The last line
    is the chain's head (sequence number and hash) when the export began."""
    chunks = export(parts.engine, format, where)
    name = f"carepath-audit.{'ndjson' if format == 'fhir' else format}"
    return StreamingResponse(
        chunks,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/verify", summary="Recompute the hash chain; name the first bad row")
def verify(parts: ServicesDep, _: Auditor) -> dict[str, Any]:
    with make_session_factory(parts.engine)() as session:
        result = verify_chain(session)
    return {
        "ok": result.ok,
        "rows_checked": result.rows_checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
