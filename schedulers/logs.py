"""Structured logs: one JSON object per line, for the log shipper to index.

Every logger of ``carepath serve`` and ``carepath worker`` goes through one handler on
stderr: carepath's own, APScheduler's (its "maximum number of running instances" lines),
uvicorn's, and anything else that reaches the root logger.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed in ``extra`` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; exceptions as ``error``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a record is emitted, not when the
    handler was made (a stream replaced since, as a test's capture is, stays reachable)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def logging_config(json_lines: bool = True, level: int = logging.INFO) -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of a carepath process: also handed to uvicorn
    (``log_config``), which applies it in each of its worker processes."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = ["stderr"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"carepath": formatter},
        "handlers": {
            "stderr": {"()": f"{__name__}.StderrHandler", "formatter": "carepath"}
        },
        "root": {"handlers": handler, "level": "WARNING"},
        "loggers": {
            "carepath": {"handlers": handler, "level": level, "propagate": False},
            # APScheduler's "Added job"/"Running job" INFO lines are noise; its warnings
            # (a sweep still running when the next is due) are not.
            "apscheduler": {"handlers": handler, "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": handler, "level": "WARNING", "propagate": False},
            "uvicorn.error": {"handlers": [], "level": "WARNING", "propagate": True},
            "uvicorn.access": {"handlers": handler, "level": "WARNING", "propagate": False},
        },
    }


def configure(json_lines: bool = True, level: int = logging.INFO) -> None:
    """Send every log of this process to stderr, as JSON lines or plain text for a terminal."""
    logging.config.dictConfig(logging_config(json_lines, level))
