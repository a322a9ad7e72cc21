"""The pathway versions and their content (CONTRACT.md section 6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

import pathways
from api.deps import ServicesDep, require
from api.problems import documented, problem
from api.schemas import PathwayDocument, PathwayList
from api.tokens import Principal
from models.pathway_versions import listed
from pathways.review import as_document

router = APIRouter(prefix="/pathways", tags=["pathways"])
Reader = Annotated[Principal, Depends(require("service", "coordinator", "auditor"))]


@router.get(
    "",
    summary="Every pathway version: status, publication day, digest",
    response_model=None,
    responses={200: {"model": PathwayList}, **documented(401, 403, 503)},
)
def pathway_versions(parts: ServicesDep, _: Reader) -> dict[str, Any]:
    """Each version shipped, oldest first, with whether this database has it on record."""
    return {"items": [entry.as_dict() for entry in listed(parts.engine)]}


@router.get(
    "/{pathway_id}/{version}",
    summary="One pathway version's rules, numbers and citations",
    response_model=None,
    responses={200: {"model": PathwayDocument}, **documented(401, 403, 404, 422, 503)},
)
def pathway_version(
    _: Reader,
    pathway_id: Annotated[str, Path(max_length=64, examples=["lumbosacral-radiculopathy"])],
    version: Annotated[str, Path(max_length=16, examples=["1.0.0"])],
) -> Any:
    """Every rule with its strength, text (the version's own numbers filled in), citations,
    conflicts, defaults and care, and every named number."""
    shipped = {v.version: v for v in pathways.versions(pathway_id)} if (
        pathway_id in pathways.PACKAGES
    ) else {}  # fmt: skip
    if version not in shipped:
        return problem(
            404, "not-found", "No such pathway version",
            f"no version {version!r} of pathway {pathway_id!r}",
        )  # fmt: skip
    found = pathways.definition(pathway_id, version)
    return as_document(found, shipped[version].status)
