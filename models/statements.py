"""Statements compiled once by SQLAlchemy and run on the driver's cursor.

Every event and every timer runs the same eight or so statements. Through SQLAlchemy's
execution layer each costs ten times what the database spends on it (measured in
``bench/events.py``: about 55 µs against 5 µs on SQLite), so the step's statements are
built as Core expressions from the mapped tables, compiled for the engine's dialect once,
and executed on the DBAPI cursor with the column types' own bind and result processors.
The SQL and the value conversions are SQLAlchemy's; only the per-call bookkeeping is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import Select, TextualSelect

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement, compiled for a dialect, with its parameter and row conversions.

    Parameters are the statement's named :func:`~sqlalchemy.bindparam` values, given in
    each call; literal values written into the statement (``status == "pending"``) are
    filled in from the statement itself.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.positional = dialect.paramstyle in ("qmark", "numeric", "format")
        names: Sequence[str] = (
            list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        )
        self.names = names
        self.bind_processors: list[tuple[str, Processor]] = []
        self.literals: dict[str, Any] = {}
        for name in names:
            bind = compiled.binds[name]
            self.bind_processors.append(
                (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
            )
            if not bind.required:
                self.literals[name] = bind.effective_value
        self.columns: list[tuple[str, Processor]] = []
        if isinstance(statement, Select | TextualSelect):
            returned: Iterable[Any] = statement.selected_columns
        else:  # an INSERT, UPDATE or DELETE answers its RETURNING columns, if any
            returned = getattr(statement, "exported_columns", ())
        if returned:
            for column in returned:
                impl = column.type.dialect_impl(dialect)
                self.columns.append((str(column.key), impl.result_processor(dialect, None)))

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The values in the driver's form, in the order or under the names the SQL uses."""
        if self.literals:
            values = {**self.literals, **values}
        try:
            converted = [
                (name, processor(values[name]) if processor else values[name])
                for name, processor in self.bind_processors
            ]
        except KeyError as missing:
            raise KeyError(f"{missing.args[0]!r} is missing for: {self.sql}") from None
        if self.positional:
            return [value for _, value in converted]
        return dict(converted)

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        """A fetched row as a dict of Python values."""
        return {
            name: processor(value) if processor else value
            for (name, processor), value in zip(self.columns, raw, strict=True)
        }


class Rows:
    """A query's answer, read once, when first asked for."""

    def __init__(self, statement: Prepared, cursor: Any) -> None:
        self.statement = statement
        self.cursor = cursor

    def _fetch(self) -> Sequence[Any]:
        try:
            return list(self.cursor.fetchall())
        finally:
            self.cursor.close()

    def raw(self) -> Sequence[Any]:
        """The rows as the driver gave them, to convert one by one (:meth:`Prepared.row`)."""
        return self._fetch()

    def first(self) -> dict[str, Any] | None:
        raws = self._fetch()
        return self.statement.row(raws[0]) if raws else None

    def all(self) -> list[dict[str, Any]]:
        return [self.statement.row(raw) for raw in self._fetch()]


class Cursor:
    """Runs :class:`Prepared` statements on a DBAPI connection.

    A query runs on a cursor of its own and is read when first asked for, so several
    can be sent before the first answer comes back: in PostgreSQL's pipeline mode they
    travel together.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.writer = connection.cursor()

    def run(self, statement: Prepared, values: Mapping[str, Any]) -> None:
        self.writer.execute(statement.sql, statement.parameters(values))

    def run_many(self, statement: Prepared, rows: Iterable[Mapping[str, Any]]) -> None:
        batch = [statement.parameters(values) for values in rows]
        if batch:
            self.writer.executemany(statement.sql, batch)

    def run_bulk(self, statement: BulkWrite, rows: Sequence[Mapping[str, Any]]) -> None:
        self.writer.execute(statement.sql, statement.values(rows))

    def query(self, statement: Prepared, values: Mapping[str, Any]) -> Rows:
        cursor = self.connection.cursor()
        cursor.execute(statement.sql, statement.parameters(values))
        return Rows(statement, cursor)

    def close(self) -> None:
        self.writer.close()


class BulkWrite:
    """Many rows written by one PostgreSQL statement: each parameter's values travel as
    one array, and ``unnest`` turns the arrays back into rows.

    Row by row, a batch of timers cost PostgreSQL a statement (and the driver a message)
    per row; one statement for the lot costs little more than one row. ``sql`` names each
    parameter ``%(name)b`` cast to its column's array type; :meth:`values` takes the rows'
    dicts, the same as :class:`Prepared` takes, each value converted by ``processors`` as
    its column's type converts it.
    """

    def __init__(self, sql: str, parameters: Sequence[tuple[str, Processor]]) -> None:
        self.sql = sql
        self.processors = parameters

    def values(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        return {
            name: [processor(row[name]) if processor else row[name] for row in rows]
            for name, processor in self.processors
        }
