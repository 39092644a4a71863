"""Retention rules (restic's --keep-last/daily/weekly/monthly), applied to backups by their creation time.

The rules, as restic documents them for ``forget``: backups are taken newest first; ``last N`` keeps the
N newest; ``daily N`` keeps the newest backup of each of the last N calendar days that have at least one
backup (``weekly``: ISO weeks, Monday to Sunday; ``monthly``: calendar months). A backup is kept when any
rule keeps it. When a rule has fewer buckets than its count, it also keeps the oldest backup (restic marks
it "oldest"). A policy whose counts are all zero keeps everything: it is never read as "remove all".
Calendar boundaries are those of the given time zone (the project's TIME_ZONE).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Generic, Protocol, TypeVar


class Dated(Protocol):
    @property
    def created(self) -> datetime | None: ...


T = TypeVar("T", bound=Dated)


@dataclass(frozen=True)
class Policy:
    """How many backups each rule keeps; a negative count means every bucket."""

    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    @property
    def empty(self) -> bool:
        return not (self.last or self.daily or self.weekly or self.monthly)

    def as_dict(self) -> dict[str, int]:
        return {"keep_last": self.last, "keep_daily": self.daily, "keep_weekly": self.weekly,
                "keep_monthly": self.monthly}


@dataclass(frozen=True)
class Decision(Generic[T]):
    item: T
    keep: bool
    reasons: tuple[str, ...]


def _day(moment: datetime) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _week(moment: datetime) -> tuple[int, ...]:
    iso = moment.isocalendar()
    return (iso.year, iso.week)


def _month(moment: datetime) -> tuple[int, ...]:
    return (moment.year, moment.month)


@dataclass
class _Rule:
    reason: str
    remaining: int
    bucket: Callable[[datetime, int], tuple[int, ...]]
    last: tuple[int, ...] | None = None


def apply_policy(items: Sequence[T], policy: Policy, tz: tzinfo) -> list[Decision[T]]:
    """Decide, newest first, which of ``items`` (each with an aware ``created``) the policy keeps."""
    ordered = sorted(items, key=lambda item: item.created, reverse=True)  # type: ignore[arg-type, return-value]
    if policy.empty:
        return [Decision(item, True, ("no retention rule set",)) for item in ordered]
    rules = [
        _Rule("last", policy.last, lambda moment, position: (position,)),
        _Rule("daily", policy.daily, lambda moment, position: _day(moment)),
        _Rule("weekly", policy.weekly, lambda moment, position: _week(moment)),
        _Rule("monthly", policy.monthly, lambda moment, position: _month(moment)),
    ]
    decisions: list[Decision[T]] = []
    oldest = len(ordered) - 1
    for position, item in enumerate(ordered):
        moment = item.created.astimezone(tz)  # type: ignore[union-attr]
        reasons: list[str] = []
        for rule in rules:
            if rule.remaining == 0:
                continue
            bucket = rule.bucket(moment, position)
            if bucket != rule.last:
                reasons.append(f"{rule.reason} backup")
            elif position == oldest:
                reasons.append(f"oldest {rule.reason} backup")  # fewer buckets than the rule asks for
            else:
                continue
            rule.last = bucket
            if rule.remaining > 0:
                rule.remaining -= 1
        decisions.append(Decision(item, bool(reasons), tuple(reasons)))
    return decisions


class Entry(Protocol):
    """What retention needs of a listed backup (results.BackupEntry has it)."""

    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> str | None: ...
    @property
    def size(self) -> int: ...
    @property
    def purpose(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def created(self) -> datetime | None: ...


@dataclass(frozen=True)
class PrunedFile:
    name: str
    created_at: str | None
    purpose: str | None
    size: int
    reasons: tuple[str, ...]

    @classmethod
    def of(cls, entry: Entry, reasons: Sequence[str]) -> PrunedFile:
        return cls(entry.name, entry.created_at, entry.purpose, entry.size, tuple(reasons))


@dataclass(frozen=True)
class PrunePlan:
    kept: list[PrunedFile]
    removed: list[PrunedFile]
    skipped: list[PrunedFile]  # never considered for removal: unreadable, not a backup, no creation time


SAFETY = "safety"


def plan_prune(entries: Sequence[Entry], policy: Policy, *, keep_safety: int, tz: tzinfo,
               is_valid: Callable[[Entry], bool]) -> PrunePlan:
    """Which backups to keep and remove: the policy for regular backups, the newest ``keep_safety`` safety
    backups, and always the newest valid regular backup (``is_valid`` is asked newest first)."""
    skipped = [PrunedFile.of(e, [f"not a readable backup: {e.error}"]) for e in entries if e.error is not None]
    skipped += [PrunedFile.of(e, ["no creation time in its header"])
                for e in entries if e.error is None and e.created is None]
    dated = [e for e in entries if e.error is None and e.created is not None]
    regular = [e for e in dated if e.purpose != SAFETY]
    safety = sorted((e for e in dated if e.purpose == SAFETY), key=lambda e: e.created, reverse=True)  # type: ignore[arg-type, return-value]

    reasons: dict[str, list[str]] = {}
    order: list[Entry] = []
    for decision in apply_policy(regular, policy, tz):
        order.append(decision.item)
        reasons[decision.item.name] = list(decision.reasons)
    for entry in order:  # newest first
        if is_valid(entry):
            reasons[entry.name].append("newest valid backup")
            break
    for position, entry in enumerate(safety):
        order.append(entry)
        keep = keep_safety < 0 or position < keep_safety
        reasons[entry.name] = [f"safety backup, one of the newest {keep_safety}"] if keep else []
    kept = [PrunedFile.of(e, reasons[e.name]) for e in order if reasons[e.name]]
    removed = [PrunedFile.of(e, ["safety backup beyond the newest " + str(keep_safety)] if e.purpose == SAFETY
                             else ["matched no rule"]) for e in order if not reasons[e.name]]
    return PrunePlan(kept=kept, removed=removed, skipped=skipped)
