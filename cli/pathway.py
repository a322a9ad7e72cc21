"""`carepath pathway`: the pathway versions, their content, and what changed between two.

``list`` needs the database (it says which versions this database has on record); ``show``
and ``diff`` read the definitions this install ships.
"""

from __future__ import annotations

from typing import Annotated

import typer

import pathways
from cli.common import database, fail, print_json, reported
from engine.definition import Definition, DefinitionError

pathway_app = typer.Typer(help="The pathway's versions and their content.", no_args_is_help=True)
PathwayOption = Annotated[str, typer.Option("--pathway", help="The pathway's id")]


def _definition(pathway_id: str, version: str) -> Definition:
    try:
        return pathways.definition(pathway_id, version)
    except DefinitionError as exc:
        fail(f"invalid: {exc}")


@pathway_app.command("list")
def list_versions() -> None:
    """Every version shipped: id, version, status (published or draft), published_at, the
    definition's digest, and whether this database has it on record."""
    from models.pathway_versions import listed

    with database() as engine, reported():
        print_json([entry.as_dict() for entry in listed(engine)])


@pathway_app.command("show")
def show(
    pathway_id: Annotated[str, typer.Argument(help="e.g. lumbosacral-radiculopathy")],
    version: Annotated[str, typer.Argument(help="e.g. 1.0.0")],
    format_: Annotated[str, typer.Option("--format", help="json")] = "json",
) -> None:
    """One version's content: every rule with its strength, text, numbers and citations."""
    from pathways.review import as_document

    if format_ != "json":
        fail(f"invalid: --format: must be json, not {format_!r}", 2)
    found = _definition(pathway_id, version)
    status = next(v.status for v in pathways.versions(pathway_id) if v.version == version)
    print_json(as_document(found, status))


@pathway_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The earlier version, e.g. 1.0.0")],
    new: Annotated[str, typer.Argument(help="The later version")],
    pathway_id: PathwayOption = pathways.LUMBOSACRAL_RADICULOPATHY,
) -> None:
    """What changed from OLD to NEW, rule by rule, and in each table of numbers."""
    from pathways.review import diff as difference

    print_json(difference(_definition(pathway_id, old), _definition(pathway_id, new)))
