"""Schedule and duration strings of the settings (crontab lines, @daily, @every 6h, 26h), parsed without Celery."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from .exceptions import BackupConfigurationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def parse_duration(text: str) -> timedelta:
    """'26h', '90m', '2d', '1w', '3600' (seconds), or combinations such as '1d12h'."""
    text = text.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 26h, 90m, 2d or 1w")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: either the five crontab fields or a fixed interval."""

    text: str
    minute: str = "*"
    hour: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    day_of_week: str = "*"
    every: timedelta | None = None

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every.total_seconds():g} seconds"
        return f"cron '{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}'"


def parse_schedule(text: str | None, *, setting: str = "schedule") -> Schedule | None:
    """A crontab line ('0 2 * * *'), an alias ('@daily'), '@every 6h', or None for an empty string."""
    if text is None or not str(text).strip():
        return None
    raw = " ".join(str(text).split())
    lowered = raw.lower()
    if lowered.startswith("@every"):
        try:
            every = parse_duration(lowered[len("@every"):])
        except ValueError as exc:
            raise BackupConfigurationError(f"{setting} {raw!r}: {exc}.") from exc
        if every.total_seconds() <= 0:
            raise BackupConfigurationError(f"{setting} {raw!r}: the interval must be positive.")
        return Schedule(text=raw, every=every)
    expanded = ALIASES.get(lowered, raw)
    fields = expanded.split(" ")
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise BackupConfigurationError(
            f"{setting} {raw!r} is not a schedule: use five crontab fields such as '0 2 * * *', "
            "an alias such as @daily, or '@every 6h'."
        )
    for field, (low, high), what in zip(fields, _RANGES, _FIELD_NAMES, strict=True):
        for number in re.findall(r"\d+", field.split("/")[0]) if "/" in field else re.findall(r"\d+", field):
            if not low <= int(number) <= high:
                raise BackupConfigurationError(
                    f"{setting} {raw!r}: {number} is outside the {what} range {low}-{high}."
                )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return Schedule(text=raw, minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                    day_of_week=day_of_week)
