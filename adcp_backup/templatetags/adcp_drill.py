"""Template tags of the admin's restore drills: each listed backup's last verdict."""
from __future__ import annotations

from django import template
from django.template import Context

from ..admin_drill import DrillVerdict, last_verdicts

register = template.Library()


@register.simple_tag(takes_context=True)
def drill_verdict(context: Context, name: str) -> DrillVerdict | None:
    """The last drill of backup ``name``; the page's verdicts are looked up once, for every row together."""
    verdicts: dict[str, DrillVerdict] | None = context.get("_adcp_drill_verdicts")
    if verdicts is None:
        rows = context.get("rows") or []
        names = [row["entry"].name for row in rows if isinstance(row, dict) and "entry" in row]
        verdicts = last_verdicts(names if name in names else [*names, name])
        context.dicts[0]["_adcp_drill_verdicts"] = verdicts
    return verdicts.get(name)
