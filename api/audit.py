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
from engine.errors import InvalidEvent
from engine.events import parse_instant
from models.audit_export import AuditFilter, export, page
from models.audit_keys import process_key
from models.audit_verify import ChainReport, parse_against, verify_log

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
    summary="The log as CSV, JSON lines or FHIR AuditEvents, ending with the chain head and "
    "its latest signed checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows in chain order, then a trailer: the head the export ran "
                           "up to, the newest signed checkpoint at or before it, and what "
                           "can and cannot be checked from the export",
            "content": {
                MEDIA["jsonl"]: {"example": '{"accepted": true, …, "seq": 1, …}\n'
                                            '{"chain_head": {"hash": "4824…", "seq": 1}, '
                                            '"checkpoint": {"id": 1, "seq": 1, …}, "export": '
                                            '{"filtered": false, "can_check": […], …}}\n'},
                MEDIA["csv"]: {"example": "seq,episode_id,…\r\n1,583dab66-…,…\r\n"
                                          '#export,"{""filtered"": false, …}"\r\n'
                                          "#checkpoint,1,audit_log,1,4824…,…\r\n"
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
    """Streamed in batches, so memory stays flat however long the log is. It ends with
    the chain's head (sequence number and hash) when the export began, the newest signed
    checkpoint at or before it, and, for a filtered export, what cannot be checked from
    it (the rows do not follow on: links and completeness)."""
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
    summary="Check the audit log: checkpoints, links, hashes, seals; name the first bad row",
    response_model=None,
    responses={200: {"model": ChainCheck}, **documented(401, 403, 422, 503)},
)
def verify(
    parts: ServicesDep,
    _: Auditor,
    full: Annotated[
        bool, Query(description="re-hash every row, not only those after the newest checkpoint")
    ] = False,
    against: Annotated[
        str | None,
        Query(
            description="SEQ:HASH, a head kept from before: the log must still hold it",
            examples=["41:" + "4824222657aba96412c72cbf7c1aa6e2d9aabf9c2b0b8b195c87c21f97a98fbb"],
        ),
    ] = None,
) -> dict[str, Any]:
    """As ``carepath audit verify``, with the service's audit key (``CAREPATH_AUDIT_KEY_FILE``)
    when it has one. 200 either way: ``ok`` says whether the log is intact."""
    parsed = None
    if against is not None:
        try:
            parsed = parse_against(against)
        except ValueError as exc:
            raise InvalidEvent("against", str(exc)) from exc
    report = verify_log(parts.engine, key=process_key(), full=full, against=parsed)
    return report_json(report)


def report_json(report: ChainReport) -> dict[str, Any]:
    """A verify's report as ``GET /audit/verify`` answers it (:class:`ChainCheck`)."""

    def checkpoint(value: Any) -> dict[str, Any] | None:
        return None if value is None else value.as_json()

    return {
        "ok": report.ok,
        "rows_checked": report.rows_checked,
        "first_bad_seq": report.first_bad_seq,
        "problem": report.problem,
        "first_bad_checkpoint": report.first_bad_checkpoint,
        "full": report.full,
        "head": {"seq": report.head_seq, "hash": report.head_hash},
        "resumed_from": checkpoint(report.resumed_from),
        "latest_checkpoint": checkpoint(report.latest_checkpoint),
        "checkpoints": report.checkpoints,
        "signatures_checked": report.signatures_checked,
        "seals_checked": report.seals_checked,
        "unauthenticated_rows": report.unauthenticated_rows,
        "warnings": report.warnings,
    }
