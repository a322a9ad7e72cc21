"""`carepath team` and `carepath cover`: the care teams' directory, and who covers whom.

A coordinator sees their own episodes, their teams' and those of the colleagues they cover
(:mod:`models.teams`); their mail goes to the address their team entry gives.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated

import typer

from cli import common
from cli.common import database, fail, print_json, reported
from engine.errors import InvalidEvent

team_app = typer.Typer(help="Care teams: who is in which, and where their mail goes.",
                       no_args_is_help=True)  # fmt: skip
# The clinic's time zone, for the day a cover ends (episodes carry their own zone).
ZONE_SETTING = "CAREPATH_CLINIC_TIMEZONE"


@team_app.command("add")
def add(
    team: Annotated[str, typer.Argument(help="The team's name, e.g. spine-north")],
    member: Annotated[str, typer.Option("--member", help="A coordinator's name (token subject)")],
    email: Annotated[
        str | None, typer.Option("--email", help="Where their mail goes")
    ] = None,
) -> None:
    """Put a coordinator in a team (again: change their address)."""
    from models.teams import add_member

    with database() as engine, reported():
        added = add_member(engine, team, member, email, common.CLOCK.now())
    typer.echo(f"{member} {'added to' if added else 'already in'} {team}", err=True)


@team_app.command("remove")
def remove(
    team: Annotated[str, typer.Argument(help="The team's name")],
    member: Annotated[str, typer.Option("--member", help="A coordinator's name")],
) -> None:
    """Take a coordinator out of a team. Their episodes stay theirs until handed over."""
    from models.teams import remove_member

    with database() as engine, reported():
        if not remove_member(engine, team, member):
            fail(f"not found: {member} is not in {team}")
    typer.echo(f"{member} removed from {team}", err=True)


@team_app.command("list")
def list_teams(
    team: Annotated[str | None, typer.Argument(help="One team only")] = None,
) -> None:
    """Every team's members and addresses, as JSON."""
    from models.teams import members

    with database() as engine, reported():
        print_json(members(engine, team))


def cover(
    coordinator: Annotated[
        str | None, typer.Option("--coordinator", help="Whose list is covered")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who covers it")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="The last day covered, YYYY-MM-DD")
    ] = None,
    end: Annotated[bool, typer.Option("--end", help="End the coordinator's covers now")] = False,
    time_zone: Annotated[
        str | None,
        typer.Option("--time-zone", help=f"The clinic's zone for --until (default: ${ZONE_SETTING}"
                                         " or UTC)"),
    ] = None,  # fmt: skip
) -> None:
    """Cover a colleague's list until the end of a day in the clinic's time zone; with
    --end, end it; with no options, list the covers that hold now."""
    from cli.access import actor
    from models.teams import cover_ends, covers, end_cover, set_cover

    now = common.CLOCK.now()
    if coordinator is None:
        if by or until or end:
            fail("invalid: --coordinator: name whose list is covered", 2)
        with database() as engine, reported():
            print_json(covers(engine, now))
        return
    if end:
        with database() as engine, reported():
            ended = end_cover(engine, coordinator, by, now)
        typer.echo(f"{ended} cover{'' if ended == 1 else 's'} of {coordinator} ended", err=True)
        return
    if by is None or until is None:
        fail("invalid: --by and --until: say who covers, and the last day covered", 2)
    try:
        last_day = date.fromisoformat(until)
    except ValueError:
        fail(f"invalid: --until: must be a date such as 2026-12-24, not {until!r}")
    zone = time_zone or os.environ.get(ZONE_SETTING) or "UTC"
    with database() as engine, reported():
        try:
            ends_at = cover_ends(last_day, zone)
        except (ValueError, KeyError):
            raise InvalidEvent("--time-zone", f"not an IANA time zone: {zone!r}") from None
        set_cover(engine, coordinator, by, ends_at, actor(), now)
    typer.echo(f"{by} covers {coordinator} until the end of {until} ({zone})", err=True)
