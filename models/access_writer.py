"""Group commit for the access log: one writer thread per process, one transaction per batch.

A read must be on record before its answer leaves, but a commit per read, each taking the
chain's head lock in turn, would cap reads at the rate of commits. So requests hand their
entry to the writer and wait; the writer takes everything queued (up to ``max_batch``),
appends it in one transaction (one head lock, one chain run), commits, and wakes every
waiter of that batch at once: requests arriving during a commit form the next batch. The
processes of one service share the chain; the head row lock makes their batches take turns.

A batch that cannot be written (database down, a trigger refusing) fails every waiter in it
with :class:`~models.access_log.AccessLogUnavailable`, and a waiter gives up after
``wait_seconds`` (default 10 s): the caller then refuses the read. A batch whose connection
was found dead is tried once more on a new one. A record may therefore exist for a read
whose answer never left (or, after such a retry, twice), never the other way round.

Usable three ways: :meth:`AccessLogWriter.arecord` from async code (awaits without blocking
the event loop), :meth:`~AccessLogWriter.record` from a thread, and, when the writer thread
is not running (the command line), ``record`` appends in a transaction of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from queue import Empty, SimpleQueue
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from models.access_log import AccessEntry, AccessLogUnavailable, append_reads
from models.timeouts import timeout_reason, timeouts_of

log = logging.getLogger("carepath.access_log")

MAX_BATCH = 500
WAIT_SECONDS = 10.0

# A waiter: a thread's Future, or an event loop and its asyncio future.
_Waiter = Future[int] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[int]"]
_Pending = tuple[AccessEntry, _Waiter]


class AccessLogWriter:
    """The access log's writer for one process (see the module docstring).

    Args:
        engine: the carepath database.
        max_batch: most entries appended in one transaction.
        wait_seconds: how long a read waits for its batch before it is refused.
    """

    def __init__(
        self, engine: Engine, max_batch: int = MAX_BATCH, wait_seconds: float = WAIT_SECONDS
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.wait_seconds = wait_seconds
        self.batches = 0  # transactions committed, for tests and the benchmark
        self._queue: SimpleQueue[_Pending | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the writer thread (the app's lifespan does)."""
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="access-log-writer", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def record(self, entry: AccessEntry) -> int:
        """Put ``entry`` on record and return its sequence number, once committed.

        Raises:
            AccessLogUnavailable: it could not be written within ``wait_seconds``.
        """
        if self._thread is None:
            return self._append_alone(entry)
        future: Future[int] = Future()
        self._queue.put((entry, future))
        try:
            return future.result(self.wait_seconds)
        except FutureTimeout:
            raise self._timed_out() from None

    async def arecord(self, entry: AccessEntry) -> int:
        """:meth:`record` for async code: the event loop runs on while the batch commits."""
        if self._thread is None:
            return await asyncio.to_thread(self._append_alone, entry)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._queue.put((entry, (loop, future)))
        try:
            async with asyncio.timeout(self.wait_seconds):
                return await future
        except TimeoutError:
            raise self._timed_out() from None

    def _timed_out(self) -> AccessLogUnavailable:
        return AccessLogUnavailable(f"not written within {self.wait_seconds:g} s")

    def _append_alone(self, entry: AccessEntry) -> int:
        return self._write([entry])[0]

    def _write(
        self, entries: Sequence[AccessEntry] | Callable[[], Sequence[AccessEntry]]
    ) -> list[int]:
        """One transaction; a connection found dead is replaced and the batch tried once
        more (nothing was committed)."""
        for attempt in (1, 2):
            try:
                seqs = append_reads(self.engine, entries)
            except DBAPIError as exc:
                if attempt == 1 and self._dropped(exc):
                    continue
                self._report_failure(exc)
                raise AccessLogUnavailable(self._reason(exc)) from exc
            except AccessLogUnavailable as exc:
                self._report_failure(exc)
                raise
            if self._failing:
                self._failing = False
                log.warning("access log written again")
            return seqs
        raise AssertionError("unreachable")  # pragma: no cover

    def _dropped(self, exc: DBAPIError) -> bool:
        dialect = self.engine.dialect
        return exc.connection_invalidated or (
            isinstance(exc.orig, dialect.loaded_dbapi.Error)
            and dialect.is_disconnect(exc.orig, None, None)
        )

    def _reason(self, exc: DBAPIError) -> str:
        """What went wrong, in words: a wait that ran out says which and for how long."""
        orig = exc.orig if exc.orig is not None else exc
        return timeout_reason(orig, timeouts_of(self.engine)) or _first_line(exc)

    def _report_failure(self, exc: Exception) -> None:
        # Logged by the service's writer thread, once per change (a database that is down
        # would otherwise log every batch). A command writing its own record says why it
        # failed itself, in its one line.
        if self._thread is not None and not self._failing:
            self._failing = True
            reason = self._reason(exc) if isinstance(exc, DBAPIError) else _first_line(exc)
            log.error("access log not written, reads are refused: %s", reason)

    def _run(self) -> None:
        while not self._stopping:
            first = self._queue.get()
            if first is None:
                break
            self._commit(first)
        # Anything queued after the stop is refused rather than left waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                return
            if item is not None:
                _settle([item[1]], "the service is stopping")

    def _commit(self, first: _Pending) -> None:
        taken = [first]

        def gather() -> list[AccessEntry]:
            # Called with the head locked: what queued meanwhile joins this batch.
            while len(taken) < self.max_batch and not self._stopping:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is None:
                    self._stopping = True
                    break
                taken.append(item)
            return [entry for entry, _ in taken]

        try:
            seqs = self._write(gather)
        except AccessLogUnavailable as exc:
            _settle([waiter for _, waiter in taken], exc.reason)
            return
        except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
            log.exception("access log batch failed")
            _settle([waiter for _, waiter in taken], _first_line(exc))
            return
        self.batches += 1
        _settle([waiter for _, waiter in taken], seqs)


def _settle(waiters: list[_Waiter], outcome: list[int] | str) -> None:
    """Give each waiter its sequence number, or (``outcome`` a reason) an error of its own;
    asyncio waiters are woken with one call per event loop, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]]
    by_loop = defaultdict(list)
    for i, waiter in enumerate(waiters):
        value: int | Exception = (
            AccessLogUnavailable(outcome) if isinstance(outcome, str) else outcome[i]
        )
        if isinstance(waiter, Future):
            if isinstance(value, Exception):
                waiter.set_exception(value)
            else:
                waiter.set_result(value)
        else:
            by_loop[waiter[0]].append((waiter[1], value))
    for loop, settled in by_loop.items():
        # A loop that has closed has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_wake, settled)


def _wake(settled: list[tuple[asyncio.Future[int], Any]]) -> None:
    for future, value in settled:
        if future.done():
            continue  # gave up waiting
        if isinstance(value, Exception):
            future.set_exception(value)
        else:
            future.set_result(value)


def _first_line(exc: BaseException) -> str:
    cause: Any = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
