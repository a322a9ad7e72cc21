"""The pathway versions and their content (CONTRACT.md section 6): as JSON, and as a FHIR R4
PlanDefinition bundle for systems that read clinical protocols."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

import pathways
from api.deps import ServicesDep, require
from api.problems import documented, problem
from api.schemas import PathwayDocument, PathwayList
from api.tokens import Principal
from models.pathway_versions import listed
from pathways.plan_definition import plan_definition
from pathways.review import as_document

router = APIRouter(prefix="/pathways", tags=["pathways"])
Reader = Annotated[Principal, Depends(require("service", "coordinator", "clinician", "auditor"))]
PathwayId = Annotated[str, Path(max_length=64, examples=["lumbosacral-radiculopathy"])]
VersionNumber = Annotated[str, Path(max_length=16, examples=["1.0.0"])]
FHIR_JSON = "application/fhir+json"


# The OpenAPI document's example: the bundle of 1.0.0 cut down to one action.
PLAN_DEFINITION_BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{
        "fullUrl": "https://carepath.example/fhir/PlanDefinition/lumbosacral-radiculopathy",
        "resource": {
            "resourceType": "PlanDefinition",
            "id": "lumbosacral-radiculopathy",
            "url": "https://carepath.example/fhir/PlanDefinition/lumbosacral-radiculopathy",
            "version": "1.0.0",
            "name": "LumbosacralRadiculopathy",
            "title": "Lumbosacral radiculopathy (low back pain with sciatica)",
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                "code": "clinical-protocol", "display": "Clinical Protocol"}]},
            "status": "active",
            "date": "2026-12-01",
            "relatedArtifact": [{"type": "citation", "label": "S3",
                                 "display": "S3 (003_ed4495df44311d77.txt): Lumbar "
                                 "Radiculopathy and Polyneuropathy: Diagnostic "
                                 "Considerations, Praxis Medical Insights, 2025 [ref 2]"}],
            "action": [{
                "id": "FU-FIRST",
                "title": "First follow-up at 2 to 4 weeks",
                "description": "The first follow-up falls 2 to 4 weeks after conservative "
                               "treatment begins: …",
                "code": [{"coding": [{
                    "system": "https://carepath.example/fhir/CodeSystem/rule-strength",
                    "code": "trigger", "display": "derives a phase, a due item or a marker"}]}],
                "documentation": [{"type": "citation", "label": "S3",
                                   "display": "S3 (003_ed4495df44311d77.txt): …"}],
                "condition": [{"kind": "applicability", "expression": {
                    "language": "text/plain",
                    "expression": "from day 14 until day 28 after presentation"}}],
                "timingRange": {
                    "low": {"value": 14, "unit": "days", "system": "http://unitsofmeasure.org",
                            "code": "d"},
                    "high": {"value": 28, "unit": "days", "system": "http://unitsofmeasure.org",
                             "code": "d"}},
            }],
        },
    }],
}  # fmt: skip


class FhirJSON(JSONResponse):
    media_type = FHIR_JSON


@router.get(
    "",
    summary="Every pathway version: status, publication day, digest",
    response_model=None,
    responses={200: {"model": PathwayList}, **documented(401, 403, 503)},
)
def pathway_versions(parts: ServicesDep, _: Reader) -> dict[str, Any]:
    """Each version shipped, oldest first, with whether this database has it on record."""
    return {"items": [entry.as_dict() for entry in listed(parts.engine)]}


def _shipped(pathway_id: str, version: str) -> pathways.Version | None:
    """The version as listed, or None when this install ships no such pathway version."""
    if pathway_id not in pathways.PACKAGES:
        return None
    return next((v for v in pathways.versions(pathway_id) if v.version == version), None)


def _not_shipped(pathway_id: str, version: str) -> JSONResponse:
    return problem(
        404, "not-found", "No such pathway version",
        f"no version {version!r} of pathway {pathway_id!r}",
    )  # fmt: skip


@router.get(
    "/{pathway_id}/{version}",
    summary="One pathway version's rules, numbers and citations",
    response_model=None,
    responses={200: {"model": PathwayDocument}, **documented(401, 403, 404, 422, 503)},
)
def pathway_version(_: Reader, pathway_id: PathwayId, version: VersionNumber) -> Any:
    """Every rule with its strength, text (the version's own numbers filled in), citations,
    conflicts, defaults and care, and every named number."""
    shipped = _shipped(pathway_id, version)
    if shipped is None:
        return _not_shipped(pathway_id, version)
    return as_document(pathways.definition(pathway_id, version), shipped.status)


@router.get(
    "/{pathway_id}/{version}/plan-definition",
    summary="One pathway version as a FHIR R4 PlanDefinition (in a collection Bundle)",
    response_class=FhirJSON,
    responses={
        200: {
            "description": "A collection Bundle whose entry is the PlanDefinition: an action "
            "per rule (its strength as a code, its citations, its timing), the care as nested "
            "actions; active when published, draft before",
            "content": {FHIR_JSON: {"example": PLAN_DEFINITION_BUNDLE}},
        },
        **documented(401, 403, 404, 422, 503),
    },
)
def pathway_plan_definition(_: Reader, pathway_id: PathwayId, version: VersionNumber) -> Any:
    """The version as FHIR: what `carepath pathway show ID VERSION --format fhir` prints."""
    if _shipped(pathway_id, version) is None:
        return _not_shipped(pathway_id, version)
    return FhirJSON(plan_definition(pathways.definition(pathway_id, version)))
