"""For auditors: the transition log, read a page at a time, exported, and verified."""

from __future__ import annotations

from datetime import datetime
from itertools import chain
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.access import ACCESS_LOGGED, reads
from api.deps import ServicesDep, require
from api.problems import documented
from api.schemas import AuditPage, ChainCheck
from api.tokens import Principal
from engine.events import parse_instant
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


INSTANT = {"format": "date-time"}


def _instant(value: str | None, field: str) -> datetime | None:
    """An instant with its UTC offset: a bare date or a local time names no instant."""
    return None if value is None else parse_instant(value, field)


def audit_filter(
    since: Annotated[
        str | None,
        Query(description="recorded at or after (an ISO 8601 time with offset)",
              examples=["2026-01-01T00:00:00Z"], json_schema_extra=INSTANT),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="recorded before (an ISO 8601 time with offset)",
              examples=["2026-02-01T00:00:00Z"], json_schema_extra=INSTANT),
    ] = None,
    episode: Annotated[str | None, Query(examples=["583dab66-f42c-419e-bcac-4411bd0d0469"])] = None,
    actor: Annotated[str | None, Query(description="a token's subject", examples=["alex"])] = None,
    rule: Annotated[str | None, Query(description="a rule ID", examples=["IMG-NO-EARLY"])] = None,
) -> AuditFilter:
    return AuditFilter(_instant(since, "since"), _instant(until, "until"), episode, actor, rule)


Filter = Annotated[AuditFilter, Depends(audit_filter)]


@router.get(
    "/transitions",
    summary="Audit rows, filtered, a page at a time",
    response_model=None,
    responses={200: {"model": AuditPage}, **documented(401, 403, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def transitions(
    request: Request,
    parts: ServicesDep,
    _: Auditor,
    where: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page")
    ] = 0,
) -> dict[str, Any]:
    rows, next_cursor = page(parts.engine, where, cursor, limit)
    reads(request, (row["episode_id"] for row in rows if row["episode_id"]))
    return {"items": rows, "next_cursor": next_cursor}


@router.get(
    "/export",
    summary="The log as CSV, JSON lines or FHIR AuditEvents, ending with the chain head",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows in chain order, then the head the export ran up to",
            "content": {
                MEDIA["jsonl"]: {"example": '{"accepted": true, …, "seq": 1, …}\n'
                                            '{"chain_head": {"hash": "4824…", "seq": 1}}\n'},
                MEDIA["csv"]: {"example": "seq,episode_id,…\r\n1,583dab66-…,…\r\n"
                                          "#chain_head,1,4824…\r\n"},
                MEDIA["fhir"]: {"example": '{"resourceType": "AuditEvent", …}\n'
                                           '{"resourceType": "Provenance", …}\n'},
            },
        },
        **documented(401, 403, 422, 503),
    },
    openapi_extra=ACCESS_LOGGED,
)  # fmt: skip
def export_log(
    request: Request,
    parts: ServicesDep,
    _: Auditor,
    where: Filter,
    format: Annotated[str, Query(pattern="^(csv|jsonl|fhir)$")] = "jsonl",  # noqa: A002
) -> StreamingResponse:
    """Streamed in batches, so memory stays flat however long the log is. The last line
    is the chain's head (sequence number and hash) when the export began."""
    chunks = export(parts.engine, format, where)
    # The first chunk is read before the answer starts: an error reading the log is then
    # still answered as a problem, not cut into a half-sent 200.
    first = next(chunks)
    # Recorded by its query: which episodes it covers is known only once it has streamed.
    reads(request, [where.episode_id] if where.episode_id else None)
    name = f"carepath-audit.{'ndjson' if format == 'fhir' else format}"
    return StreamingResponse(
        chain([first], chunks),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/verify",
    summary="Recompute the hash chain; name the first bad row",
    response_model=None,
    responses={200: {"model": ChainCheck}, **documented(401, 403, 503)},
)
def verify(parts: ServicesDep, _: Auditor) -> dict[str, Any]:
    with make_session_factory(parts.engine)() as session:
        result = verify_chain(session)
    return {
        "ok": result.ok,
        "rows_checked": result.rows_checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
