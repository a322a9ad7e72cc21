"""Writing checkpoints: check what is about to be signed, then sign the head.

A checkpoint writer never signs a forgery: before signing the head it verifies the rows
since the newest checkpoint (links, hashes, and seals, which someone without the key cannot
make) and that checkpoint itself. A writer that keeps running (``carepath serve``,
``carepath worker``) also remembers the last checkpoint it wrote, and refuses, loudly, when
the log no longer holds it: a head that went backwards means rows were cut off, and the
checkpoints that named them deleted too.

``carepath audit checkpoint`` writes one on request; :class:`CheckpointSchedule` is what
the worker calls after each sweep.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from engine.errors import CarepathError
from models.audit import AUDIT_CHAIN, ChainSpec, head_seal
from models.audit_keys import AuditKey
from models.audit_verify import ChainReport, verify_log
from models.checkpoints import Checkpoint, by_id, latest, sign, store
from models.db import read_only

log = logging.getLogger("carepath.audit")

# Our default: a checkpoint every five minutes, when the head has moved since the last one.
DEFAULT_CHECKPOINT_INTERVAL = 300.0
CHECKPOINT_INTERVAL_ENV = "CAREPATH_AUDIT_CHECKPOINT_INTERVAL"


class ChainNotSignable(CarepathError):
    """The log was found broken, or behind a checkpoint this process wrote: nothing is
    signed.

    Args:
        log_name: the log.
        seq: the first bad row (or the row the log went back from).
        problem: what is wrong, in words.
    """

    def __init__(self, log_name: str, seq: int | None, problem: str) -> None:
        self.log_name = log_name
        self.seq = seq
        self.problem = problem
        super().__init__(f"{log_name} not checkpointed: {problem}")


def _remembered_problem(engine: Engine, spec: ChainSpec, last: Checkpoint) -> str | None:
    """What became of the checkpoint this process wrote last, if anything did."""
    with read_only(engine) as connection:
        head_seq = connection.scalar(select(spec.head.c.last_seq).where(spec.head.c.id == 1))
        row_hash = connection.scalar(select(spec.log.c.hash).where(spec.log.c.seq == last.seq))
        stored = by_id(connection, last.id) if last.id is not None else None
    signed = f"this process signed row {last.seq} at {last.signed_at.isoformat()}"
    if head_seq is None or head_seq < last.seq:
        return f"the log went backwards: {signed}; its head is now row {head_seq}"
    if row_hash != last.hash:
        return f"row {last.seq} no longer carries the hash {signed}"
    if stored != last:
        return f"checkpoint {last.id}, written by this process, was removed or changed"
    return None


def write_checkpoint(
    engine: Engine,
    key: AuditKey,
    now: datetime,
    spec: ChainSpec = AUDIT_CHAIN,
    *,
    accept_unsealed: bool = False,
    last: Checkpoint | None = None,
    only_if_moved: bool = False,
) -> Checkpoint | None:
    """Verify the log since its newest checkpoint, then sign and store its head.

    Args:
        engine: the database.
        key: the audit key.
        now: the checkpoint's time.
        spec: which log.
        accept_unsealed: sign over rows (and a head) that carry no seal, written by a
            process without the key or before the key existed: an operator's explicit word
            for them. The head is sealed then.
        last: the checkpoint this process wrote before, which the log must still hold.
        only_if_moved: write nothing when the newest checkpoint already names the head.

    Returns:
        The checkpoint stored, or None (an empty log, or a head that had not moved).

    Raises:
        ChainNotSignable: the log is broken, or went back behind ``last``.
    """
    if last is not None:
        problem = _remembered_problem(engine, spec, last)
        if problem is not None:
            raise ChainNotSignable(spec.name, last.seq, problem)
    if only_if_moved:
        with read_only(engine) as connection:
            head = connection.execute(
                select(spec.head.c.last_seq, spec.head.c.last_hash).where(spec.head.c.id == 1)
            ).first()
            newest = latest(connection, spec)
        if head is not None and newest is not None and _names(newest[0], key, head):
            return None
    report: ChainReport = verify_log(
        engine, spec, key=key, every_checkpoint=False, accept_unsealed=accept_unsealed
    )
    if not report.ok:
        raise ChainNotSignable(spec.name, report.first_bad_seq, report.problem or "broken")
    if report.head_seq == 0:
        return None
    checkpoint = sign(key, spec, report.head_seq, report.head_hash, now)
    with engine.begin() as connection:
        if accept_unsealed:
            # The operator vouches for the head too: seal it, unless it has moved meanwhile
            # (then whoever moved it sealed it, or the next verify says it did not).
            sealer = key.sealer(spec.name)
            connection.execute(
                update(spec.head)
                .where(
                    spec.head.c.id == 1,
                    spec.head.c.last_seq == report.head_seq,
                    spec.head.c.last_hash == report.head_hash,
                    spec.head.c.seal.is_(None),
                )
                .values(seal=head_seal(sealer, report.head_seq, report.head_hash))
            )
        return store(connection, checkpoint)


def _names(checkpoint: Checkpoint, key: AuditKey, head: Any) -> bool:
    """Whether the checkpoint names the head, and is one this key really signed."""
    if (checkpoint.seq, checkpoint.hash) != (head[0], head[1]) or checkpoint.key_id != key.id:
        return False
    try:
        signature = bytes.fromhex(checkpoint.signature)
    except ValueError:
        return False
    return key.public.verify(signature, checkpoint.message())


class CheckpointSchedule:
    """Writes a checkpoint at most every ``interval`` seconds, when the head has moved.

    Called with the time after each of the worker's sweeps (``schedulers.worker``). A log
    that cannot be signed is logged as an error, once per distinct problem, and tried again
    at the next interval; :attr:`problem` holds it meanwhile.
    """

    def __init__(
        self,
        engine: Engine,
        key: AuditKey,
        interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        spec: ChainSpec = AUDIT_CHAIN,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.engine = engine
        self.key = key
        self.interval = timedelta(seconds=interval)
        self.spec = spec
        self.last: Checkpoint | None = None
        self.next_at: datetime | None = None
        self.problem: str | None = None

    def __call__(self, now: datetime) -> Checkpoint | None:
        if self.next_at is not None and now < self.next_at:
            return None
        self.next_at = now + self.interval
        try:
            written = write_checkpoint(
                self.engine, self.key, now, self.spec, last=self.last, only_if_moved=True
            )
        except ChainNotSignable as exc:
            if exc.problem != self.problem:
                log.error(
                    "audit log not checkpointed",
                    extra={"log": exc.log_name, "seq": exc.seq, "problem": exc.problem},
                )
            self.problem = exc.problem
            return None
        if self.problem is not None:
            log.info("audit log checkpointed again", extra={"log": self.spec.name})
            self.problem = None
        if written is not None:
            self.last = replace(written)
            log.info(
                "audit checkpoint",
                extra={"log": written.log, "checkpoint": written.id, "seq": written.seq},
            )
        return written
