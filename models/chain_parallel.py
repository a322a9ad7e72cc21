"""A long walk split over processes: each re-hashes a range of rows on its own connection.

Once a row's ``prev_hash`` is read, its hash depends on nothing else, so the rows of a long
walk are cut into as many consecutive parts as there are cores; this process walks the
first, helper processes the others, each on its own connection, and the parts are then
joined: each part's first row must link to the last row of the part before. The answer is
the one walk would give, the first problem included; starting the helpers costs a fraction
of a second, so only walks of :data:`PARALLEL_FROM_ROWS` rows or more are split.

A helper is ``python -m models.chain_parallel``, handed its part on stdin and answering on
stdout (pickled, between processes of one install): started fresh rather than forked,
since the caller may be a threaded server, and without re-running the caller's main
module, as :mod:`multiprocessing`'s spawn would.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any, cast

from sqlalchemy import Engine

from engine.errors import CarepathError
from models.audit import ChainSpec
from models.audit_keys import Sealer
from models.chain_walk import BATCH, Problem, Walked, walk

# Our default: below this many rows one process is as quick.
PARALLEL_FROM_ROWS = 200_000
MAX_PROCESSES = 4


def processes_for(engine: Engine, rows: int) -> int:
    """How many processes to walk ``rows`` rows with (1: in this one)."""
    database = engine.url.database or ""
    memory = engine.dialect.name == "sqlite" and database in ("", ":memory:")
    if rows < PARALLEL_FROM_ROWS or memory:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


class HelperFailed(CarepathError):
    """A helper process of a verify could not walk its part (its reason, in words)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"verify helper: {reason}")


def _walk_part(
    url: str, plain: tuple[Any, ...], after: int, up_to: int, sealer: Sealer | None,
    seals_required_after: int | None, seals_from: int, batch: int,
) -> Walked:  # fmt: skip
    """One part, in a helper process."""
    from models.db import make_engine

    engine = make_engine(url)
    try:
        spec = ChainSpec.from_plain(plain)
        return walk(
            engine, spec, after, None, up_to, sealer=sealer,
            seals_required_after=seals_required_after, seals_from=seals_from, batch=batch,
        )  # fmt: skip
    finally:
        engine.dispose()


def walk_in_parts(
    engine: Engine,
    spec: ChainSpec,
    after: int,
    prev_hash: str,
    up_to: int,
    *,
    processes: int,
    sealer: Sealer | None = None,
    seals_required_after: int | None = None,
    seals_from: int = 0,
    batch: int = BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> Walked:
    """:func:`models.chain_walk.walk` over ``processes`` processes."""
    size = -(-(up_to - after) // processes)
    bounds = [(start, min(start + size, up_to)) for start in range(after, up_to, size)]
    url = engine.url.render_as_string(hide_password=False)
    helpers = [
        _start((url, spec.plain(), start, end, sealer, seals_required_after, seals_from, batch))
        for start, end in bounds[1:]
    ]
    try:
        first = walk(
            engine, spec, after, prev_hash, bounds[0][1], sealer=sealer,
            seals_required_after=seals_required_after, seals_from=seals_from, batch=batch,
            on_progress=on_progress,
        )  # fmt: skip
        parts = [first]
        for helper in helpers:
            part = _answer(helper)
            parts.append(part)
            if on_progress is not None:
                on_progress(part.rows)
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.kill()
            helper.wait()
            cast(IO[bytes], helper.stdout).close()
    return _joined(parts, bounds, prev_hash)


def _start(arguments: tuple[Any, ...]) -> subprocess.Popen[bytes]:
    helper = subprocess.Popen(
        [sys.executable, "-m", "models.chain_parallel"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    stdin = cast(IO[bytes], helper.stdin)
    stdin.write(pickle.dumps(arguments))
    stdin.close()
    return helper


def _answer(helper: subprocess.Popen[bytes]) -> Walked:
    answer = cast(IO[bytes], helper.stdout).read()
    if helper.wait() != 0 or not answer:
        raise HelperFailed(f"exited with status {helper.returncode}")
    outcome = pickle.loads(answer)
    if isinstance(outcome, str):
        raise HelperFailed(outcome)
    return cast(Walked, outcome)


def _joined(parts: list[Walked], bounds: list[tuple[int, int]], prev_hash: str) -> Walked:
    """The parts as one walk: up to the first problem, or the first part that does not
    link to the one before, or ends short."""
    rows, last_seq, last_hash = 0, bounds[0][0], prev_hash
    for index, (part, (start, end)) in enumerate(zip(parts, bounds, strict=True)):
        if index > 0 and part.first_prev_hash not in (None, last_hash):
            problem = Problem(
                start + 1, f"{part.first_label}: prev_hash does not match row {start}"
            )
            return Walked(rows, last_seq, last_hash, problem)
        rows += part.rows
        if part.problem is not None or part.last_seq != end:
            # A problem, or the log ends inside this part: the walk stops there.
            return Walked(rows, part.last_seq, part.last_hash or last_hash, part.problem)
        last_seq, last_hash = part.last_seq, part.last_hash or last_hash
    return Walked(rows, last_seq, last_hash)


def _serve() -> None:
    """A helper's life: its part from stdin, the walk, the answer to stdout."""
    arguments = pickle.load(sys.stdin.buffer)
    try:
        outcome: Walked | str = _walk_part(*arguments)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
        outcome = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    sys.stdout.buffer.write(pickle.dumps(outcome))


if __name__ == "__main__":
    _serve()
