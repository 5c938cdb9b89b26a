"""Structured log lines: `event=job.applied task=rewards.checkin key=checkin:42:2026-11-24 …`.

logfmt keeps each line readable in a terminal and parseable by any log
pipeline, and every line about a job carries its task name and key.
"""

from __future__ import annotations

import logging
from typing import Any


def _format_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def logfmt(event: str, **fields: Any) -> str:
    parts = [f"event={event}"]
    parts.extend(f"{name}={_format_value(value)}" for name, value in fields.items() if value is not None)
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, logfmt(event, **fields))
