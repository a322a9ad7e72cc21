"""`carepath episode replay ID` and `carepath audit replay`: re-run recorded histories.

Both print the summary as JSON on stdout (episodes, audit rows replayed, rows matched, and
each differing episode's first difference in detail) and exit 0 when every step matched;
otherwise each differing episode is one line on stderr naming the audit row, its trigger
and type, and what was recorded against what the replay gives, and the exit status is 1.
The database is only read (:mod:`models.replay`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from cli import common
from cli.common import database, fail, print_json, reported
from engine.settings import PathwayDefaults

REPLAY_HELP = (
    "Steps run on a private in-memory database under each step's recorded pathway version, "
    "with this process's CAREPATH_DEFAULTS (under other defaults than the steps were taken "
    "with, the replay differs and says where). The database is only read."
)


def run(episode_ids: Sequence[str] | None, progress: bool) -> None:
    """Replay ``episode_ids`` (every episode when None) and report as the commands do."""
    from models.replay import replay_episodes
    from models.replay_history import episode_ids as listed

    try:
        defaults = PathwayDefaults.from_env()
    except (ValueError, TypeError) as exc:
        fail(f"invalid: CAREPATH_DEFAULTS: {exc}", 2)
    common.audit_key()  # a key file that cannot be used is bad usage, found first
    with database() as engine, reported():
        wanted = listed(engine, episode_ids)
        if progress:
            with typer.progressbar(length=len(wanted), label="replaying", file=sys.stderr) as bar:
                report = replay_episodes(engine, wanted, defaults, on_progress=bar.update)
        else:
            report = replay_episodes(engine, wanted, defaults)
    print_json(report.as_json())
    for difference in report.differing:
        typer.echo(difference.line(), err=True)
    if not report.ok:
        raise typer.Exit(1)
