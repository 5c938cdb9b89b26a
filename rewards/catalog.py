"""The task catalogue: rewards/catalog.toml (or REWARDS_CATALOG_PATH), loaded and checked.

The catalogue is data, never code. A mistake in it stops a worker at start-up
with a message naming the entry and the field, instead of surfacing as a
claim that pays the wrong amount at 3 a.m.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from rewards import settings as settings_module

SOCIAL = "social"
REFERRAL = "referral"
ACTION = "action"
TASK_TYPES = (SOCIAL, REFERRAL, ACTION)

TASK_ID_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")
# Limits against a typo adding zeros: no task pays more, or asks for more.
MAX_REWARD_XP = 1_000_000
MAX_REQUIREMENT = 100_000
_FIELDS = {"type", "reward_xp", "requirement", "title"}


class CatalogError(ValueError):
    """The catalogue file cannot be used; the message names the entry and field."""


@dataclass(frozen=True)
class CatalogTask:
    task_id: str
    type: str
    reward_xp: int
    requirement: int  # 0 for social tasks, which have none
    title: str


@dataclass(frozen=True)
class Catalog:
    tasks: dict[str, CatalogTask]
    version: str  # "catalog-" and a hash of the file: stored on the ledger rows it priced

    def get(self, task_id: str) -> CatalogTask | None:
        return self.tasks.get(task_id)


def parse(text: str, source: str = "catalog.toml") -> Catalog:
    """Check every entry of a catalogue file's text; raise CatalogError naming the first problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"{source}: not valid TOML: {error}") from None
    unknown = set(document) - {"tasks"}
    if unknown:
        raise CatalogError(f"{source}: unknown top-level key(s) {sorted(unknown)}; only [tasks.*] entries")
    entries = document.get("tasks")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{source}: no tasks; add at least one [tasks.<task_id>] entry")
    tasks = {task_id: _task(source, task_id, entry) for task_id, entry in entries.items()}
    version = "catalog-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return Catalog(tasks=tasks, version=version)


def _task(source: str, task_id: str, entry: Any) -> CatalogTask:
    def problem(field: str, message: str) -> CatalogError:
        return CatalogError(f"{source}: task {task_id!r}: field {field!r} {message}")

    if not TASK_ID_PATTERN.match(task_id):
        raise CatalogError(f"{source}: task {task_id!r}: the id must match {TASK_ID_PATTERN.pattern}")
    if not isinstance(entry, dict):
        raise CatalogError(f"{source}: task {task_id!r}: must be a table of fields")
    for field in sorted(set(entry) - _FIELDS):
        raise problem(field, f"is not a catalogue field (known: {', '.join(sorted(_FIELDS))})")
    task_type = entry.get("type")
    if task_type not in TASK_TYPES:
        raise problem("type", f"must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    reward_xp = entry.get("reward_xp")
    if not _whole(reward_xp) or not 0 < reward_xp <= MAX_REWARD_XP:
        raise problem("reward_xp", f"must be a whole number from 1 to {MAX_REWARD_XP:,}, got {reward_xp!r}")
    requirement = _requirement(task_type, entry.get("requirement"), problem)
    title = entry.get("title", task_id)
    if not isinstance(title, str) or not 0 < len(title) <= 200:
        raise problem("title", "must be text of 1 to 200 characters")
    return CatalogTask(task_id, task_type, reward_xp, requirement, title)


def _requirement(task_type: str, requirement: Any, problem) -> int:
    if task_type == SOCIAL:
        if requirement is not None:
            raise problem("requirement", "is not allowed: the upstream app verifies social tasks")
        return 0
    if requirement is None:
        raise problem("requirement", f"is required for {task_type} tasks")
    if not _whole(requirement) or not 0 < requirement <= MAX_REQUIREMENT:
        raise problem("requirement", f"must be a whole number from 1 to {MAX_REQUIREMENT:,}, got {requirement!r}")
    return requirement


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load(path: str | Path | None = None) -> Catalog:
    """The catalogue at `path`, or the one shipped with the engine."""
    if path is None:
        source = resources.files("rewards").joinpath("catalog.toml")
        return parse(source.read_text(encoding="utf-8"), "rewards/catalog.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot read the catalogue: {error.strerror}") from None
    return parse(text, str(path))


@lru_cache(maxsize=1)
def get() -> Catalog:
    """The process's catalogue (REWARDS_CATALOG_PATH, else the shipped one), read once."""
    return load(settings_module.get().catalog_path)
