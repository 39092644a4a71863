"""Template filters of the Backups page: sizes in the command line's units, grouped numbers, local times."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.utils import formats, timezone

from ..display import for_browser, format_size

register = template.Library()


@register.filter
def size(value: int | None) -> str:
    """Bytes as the commands write them (KiB, MiB, GiB)."""
    return format_size(value)


@register.filter
def thousands(value: Any) -> Any:
    """A count with the locale's thousands separator; anything that is not a number as it is."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "-" if value is None else value
    return formats.number_format(value, force_grouping=True)


@register.filter
def moment(value: datetime | None) -> str:
    """A date and time in the site's time zone, in the locale's format, with the zone's name."""
    if value is None:
        return "-"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return f"{formats.date_format(value, 'DATETIME_FORMAT')} {formats.date_format(value, 'T')}".strip()


@register.filter
def duration(value: timedelta | None) -> str:
    """1 h 02 min, 3 min 05 s, 4.2 s."""
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def parse_moment(value: str | None) -> datetime | None:
    """An ISO 8601 time from a backup's header or a job's result, for ``moment``."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@register.filter
def plain(value: str | None) -> str:
    """A service's message without command-line advice."""
    return for_browser(str(value or ""))
