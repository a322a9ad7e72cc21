"""`carepath pathway`: the pathway versions, their content, and what changed between two.

``list`` needs the database (it says which versions this database has on record); ``show``
and ``diff`` read the definitions this install ships. ``show`` gives a version as JSON, as a
FHIR R4 PlanDefinition bundle (``--format fhir``), or as the pathway book that clinical
governance signs off (``--format book``, HTML). ``migrate`` moves active episodes to another
version (:mod:`models.migration`), or with ``--dry-run`` shows what it would change.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import pathways
from cli import common
from cli.common import as_json, database, fail, print_json, reported
from engine.definition import Definition, DefinitionError
from engine.settings import PathwayDefaults

if TYPE_CHECKING:
    from models.migration import Planned

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
    format_: Annotated[str, typer.Option("--format", help="json, fhir or book")] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: stdout)")] = None,
) -> None:
    """One version's content: every rule with its strength, text, numbers and citations, as
    JSON, as a FHIR R4 PlanDefinition bundle (fhir) or as the pathway book (book, HTML)."""
    if format_ not in SHOWN:
        fail(f"invalid: --format: must be json, fhir or book, not {format_!r}", 2)
    found = _definition(pathway_id, version)
    text = SHOWN[format_](found)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    out.write_text(text if text.endswith("\n") else text + "\n", "utf-8")
    typer.echo(f"wrote {out}", err=True)


def _json(found: Definition) -> str:
    from pathways.review import as_document

    status = next(v.status for v in pathways.versions(found.id) if v.version == found.version)
    return as_json(as_document(found, status))


def _fhir(found: Definition) -> str:
    from pathways.plan_definition import plan_definition

    return as_json(plan_definition(found))


def _book(found: Definition) -> str:
    from pathways.book import book

    return book(found, pathways.previous(found))


# What `pathway show --format` gives; each reads its module only when asked for.
SHOWN: dict[str, Callable[[Definition], str]] = {"json": _json, "fhir": _fhir, "book": _book}


@pathway_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The earlier version, e.g. 1.0.0")],
    new: Annotated[str, typer.Argument(help="The later version")],
    pathway_id: PathwayOption = pathways.LUMBOSACRAL_RADICULOPATHY,
) -> None:
    """What changed from OLD to NEW, rule by rule, and in each table of numbers."""
    from pathways.review import diff as difference

    print_json(difference(_definition(pathway_id, old), _definition(pathway_id, new)))


@pathway_app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The version to move episodes to")],
    from_: Annotated[
        str | None, typer.Option("--from", help="Only episodes on this version")
    ] = None,
    episode: Annotated[
        list[str] | None, typer.Option("--episode", help="Only this episode (repeatable)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing")
    ] = False,
    actor: Annotated[str, typer.Option("--actor", help="Who migrates, for the audit log")] = (
        "system"
    ),
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Processes to share the work (default: 1)")
    ] = 1,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Episodes per transaction (500)")
    ] = None,
    pathway_id: PathwayOption = pathways.LUMBOSACRAL_RADICULOPATHY,
) -> None:
    """Move the active episodes to version TO: each one's record is taken again under TO
    and the episode becomes what it would be had it run on TO from the start.

    Prints one JSON line per episode (what changes: configuration, due items added, moved
    or cancelled with their dates, timers, recommendations; or why it is left on its
    version), then a summary line. Safe beside a running worker, and to run again: a
    migration stopped part way is finished by running it again.
    """
    from models.migration import BATCH, check_target, count_candidates
    from models.migration import migrate as run

    try:
        defaults = PathwayDefaults.from_env()
    except (ValueError, TypeError) as exc:
        fail(f"invalid: CAREPATH_DEFAULTS: {exc}", 2)
    try:
        check_target(pathway_id, to)
    except ValueError as exc:
        fail(f"invalid: --to: {exc}", 2)
    with database() as engine, reported():
        # Named episodes are each reported, migrated or left.
        total = len(set(episode)) if episode else count_candidates(engine, pathway_id, to, from_)
        label = "planning" if dry_run else "migrating"
        with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:

            def shown(plan: Planned) -> None:
                typer.echo(json.dumps(plan.as_json(), default=str))
                bar.update(1)

            summary = run(
                engine, to, common.CLOCK.now(), pathway_id=pathway_id, source=from_,
                ids=episode, dry_run=dry_run, actor=actor, defaults=defaults, on_episode=shown,
                batch=batch_size or BATCH, jobs=jobs,
            )  # fmt: skip
    typer.echo(json.dumps({"summary": summary.as_json()}))
    done = "would migrate" if dry_run else "migrated"
    typer.echo(
        f"{summary.migrated} episode(s) {done} to {to} ({summary.changed} with more than "
        f"their version changed), {summary.left} left on their version",
        err=True,
    )
