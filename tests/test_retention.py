"""Retention on a real folder of real backups spread over 400 days: restic's rules, exactly, and --dry-run."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from adcp_backup import services, signals

from .scheduling_fixtures import write_backup

START = datetime(2024, 6, 1, tzinfo=UTC)
DAYS = 400


def backup_times() -> list[datetime]:
    """Irregular: some days have none, some three, most one; the hour varies."""
    times = []
    for day in range(DAYS):
        base = START + timedelta(days=day)
        if day % 7 == 3 or 120 <= day < 155:  # gaps, and October 2024 without any backup
            continue
        if day % 5 == 0:
            times += [base.replace(hour=1), base.replace(hour=13, minute=5), base.replace(hour=23, minute=30)]
        else:
            times.append(base.replace(hour=2, minute=day % 60))
    return times


@pytest.fixture
def folder(backup_env: Path) -> Path:
    return backup_env / "backups"


@pytest.fixture
def spread(folder: Path) -> dict[str, datetime]:
    """name -> creation time of every regular backup; names are random, so only headers tell the time."""
    return {write_backup(folder, moment): moment for moment in backup_times()}


def files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if not p.name.startswith(".")}


def newest_per_bucket(times: dict[str, datetime], bucket: Callable[[datetime], Any], count: int) -> set[str]:
    """The documented rule, read independently: group by bucket, take each group's newest, the ``count``
    newest groups; when there are fewer groups than ``count``, the oldest backup is kept as well."""
    ordered = sorted(times, key=times.__getitem__, reverse=True)
    groups = [list(g) for _, g in groupby(ordered, key=lambda n: bucket(times[n]))]
    kept = {group[0] for group in groups[:count]}
    if len(groups) < count:
        kept.add(ordered[-1])
    return kept


def day(moment: datetime) -> Any:
    return moment.date()


def iso_week(moment: datetime) -> Any:
    return moment.isocalendar()[:2]


def month(moment: datetime) -> Any:
    return (moment.year, moment.month)


def names(pruned: list[Any]) -> set[str]:
    return {p.name for p in pruned}


def test_the_spread_covers_400_days_with_gaps_and_several_backups_a_day(spread):
    days = {m.date() for m in spread.values()}
    assert (max(spread.values()) - min(spread.values())).days >= 395
    assert len(spread) > len(days) > 250


def test_keep_last_keeps_the_newest_n_by_header_time_not_by_name(folder, spread):
    result = services.backup_prune(keep_last=5, keep_daily=0, keep_weekly=0, keep_monthly=0)
    newest = sorted(spread, key=spread.__getitem__, reverse=True)[:5]
    assert names(result.kept) == set(newest)
    assert names(result.removed) == set(spread) - set(newest)
    assert set(files(folder)) == set(newest)
    assert all(p.reasons for p in result.kept)
    assert result.freed_bytes > 0


@pytest.mark.parametrize(("rule", "bucket", "count"), [
    ("keep_daily", day, 10),
    ("keep_daily", day, 45),
    ("keep_weekly", iso_week, 8),
    ("keep_weekly", iso_week, 30),
    ("keep_monthly", month, 6),
    ("keep_monthly", month, 12),
])
def test_each_bucket_rule_keeps_the_newest_backup_of_the_last_n_buckets(folder, spread, rule, bucket, count):
    policy = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, rule: count}
    result = services.backup_prune(**policy)
    expected = newest_per_bucket(spread, bucket, count)
    assert len(expected) == count
    assert names(result.kept) == expected
    assert set(files(folder)) == expected


def test_a_bucket_rule_with_fewer_buckets_than_asked_also_keeps_the_oldest_backup(folder, spread):
    months = {month(m) for m in spread.values()}
    assert len(months) == 13  # June 2024 to July 2025 is 14 calendar months, one without backups
    result = services.backup_prune(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=24)
    oldest = min(spread, key=spread.__getitem__)
    newest_of_each_month = newest_per_bucket(spread, month, 13)
    assert oldest not in newest_of_each_month
    assert names(result.kept) == newest_of_each_month | {oldest}
    assert next(p for p in result.kept if p.name == oldest).reasons == ("oldest monthly backup",)


def test_rules_are_combined_a_backup_kept_by_any_rule_is_kept(folder, spread):
    result = services.backup_prune(keep_last=3, keep_daily=7, keep_weekly=5, keep_monthly=12)
    expected = (newest_per_bucket(spread, lambda m: m, 3) | newest_per_bucket(spread, day, 7)
                | newest_per_bucket(spread, iso_week, 5) | newest_per_bucket(spread, month, 12))
    assert names(result.kept) == expected
    assert set(files(folder)) == expected
    newest = max(spread, key=spread.__getitem__)
    kept_newest = next(p for p in result.kept if p.name == newest)
    assert {"last backup", "daily backup", "weekly backup", "monthly backup"} <= set(kept_newest.reasons)


def test_restic_documentation_example_twelve_sundays_keep_daily_4(folder, backup_env):
    sundays = {write_backup(folder, datetime(2019, 9, 1, 11, tzinfo=UTC) + timedelta(weeks=w)): w
               for w in range(12)}
    result = services.backup_prune(keep_last=0, keep_daily=4, keep_weekly=0, keep_monthly=0)
    assert sorted(sundays[n] for n in names(result.kept)) == [8, 9, 10, 11]  # 2019-10-27 .. 2019-11-17
    assert len(result.removed) == 8


def test_daily_backups_keep_daily_7_keep_weekly_5_keep_monthly_12_as_documented(folder, backup_env):
    # One backup a day; the newest is on a Sunday, so the 7 dailies already hold one week's last day.
    newest = datetime(2025, 11, 30, 4, tzinfo=UTC)
    assert newest.isoweekday() == 7
    for back in range(400):
        write_backup(folder, newest - timedelta(days=back))
    result = services.backup_prune(keep_last=0, keep_daily=7, keep_weekly=5, keep_monthly=12)
    reasons = [set(p.reasons) for p in result.kept]
    assert sum("daily backup" in r for r in reasons) == 7
    assert sum("weekly backup" in r and "daily backup" not in r for r in reasons) == 4
    assert sum(r == {"monthly backup"} for r in reasons) in (11, 12)
    assert len(result.kept) + len(result.removed) == 400


def test_calendar_days_are_those_of_the_project_time_zone(folder, backup_env, settings):
    settings.TIME_ZONE = "America/New_York"
    late = write_backup(folder, datetime(2025, 3, 11, 3, 30, tzinfo=UTC))  # 23:30 on the 10th there
    early = write_backup(folder, datetime(2025, 3, 10, 15, 0, tzinfo=UTC))  # 11:00 on the 10th
    older = write_backup(folder, datetime(2025, 3, 8, 15, 0, tzinfo=UTC))
    result = services.backup_prune(keep_last=0, keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert names(result.kept) == {late, older}  # in UTC the two newest days would be the 11th and the 10th
    assert names(result.removed) == {early}


def test_dry_run_lists_what_would_go_and_deletes_nothing(folder, spread):
    before = files(folder)
    dry = services.backup_prune(keep_last=2, keep_daily=5, keep_weekly=3, keep_monthly=2, dry_run=True)
    assert dry.dry_run and dry.removed
    assert files(folder) == before
    real = services.backup_prune(keep_last=2, keep_daily=5, keep_weekly=3, keep_monthly=2)
    assert names(real.removed) == names(dry.removed)
    assert set(files(folder)) == names(dry.kept)


def test_never_removes_unreadable_files_non_backups_or_the_newest_valid_backup(folder, spread):
    newest_time = max(spread.values())
    truncated = write_backup(folder, newest_time + timedelta(hours=1), truncated=True)
    (folder / "README.txt").write_text("not a backup\n")
    (folder / "adcp-backup-20250101-000000-deadbeef.jsonl.gz").write_bytes(b"\x1f\x8b garbage")
    newest_valid = max(spread, key=spread.__getitem__)
    result = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert names(result.kept) == {truncated, newest_valid}
    assert "newest valid backup" in next(p for p in result.kept if p.name == newest_valid).reasons
    not_backups = {"README.txt", "adcp-backup-20250101-000000-deadbeef.jsonl.gz"}
    assert names(result.skipped) == not_backups
    assert set(files(folder)) == {truncated, newest_valid} | not_backups


def test_all_counts_zero_removes_nothing(folder, spread):
    before = files(folder)
    result = services.backup_prune(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert result.removed == [] and result.notes
    assert files(folder) == before


def test_safety_backups_follow_their_own_retention(folder, spread):
    newest_time = max(spread.values())
    safety = [write_backup(folder, newest_time + timedelta(minutes=10 * i), purpose="safety") for i in range(1, 6)]
    old_safety = write_backup(folder, START, purpose="safety")
    result = services.backup_prune(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_safety=2)
    regular_newest = sorted(spread, key=spread.__getitem__, reverse=True)[:2]
    assert names(result.kept) == set(regular_newest) | set(safety[-2:])  # safety backups do not count as "last"
    assert names(result.removed) >= set(safety[:3]) | {old_safety}
    assert set(files(folder)) == set(regular_newest) | set(safety[-2:])


def test_defaults_come_from_settings(folder, spread, settings):
    settings.ADCP_BACKUP_KEEP_LAST = 4
    settings.ADCP_BACKUP_KEEP_DAILY = 0
    settings.ADCP_BACKUP_KEEP_WEEKLY = 2
    settings.ADCP_BACKUP_KEEP_MONTHLY = 0
    result = services.backup_prune(dry_run=True)
    assert result.policy == {"keep_last": 4, "keep_daily": 0, "keep_weekly": 2, "keep_monthly": 0, "keep_safety": 3}
    assert names(result.kept) == newest_per_bucket(spread, lambda m: m, 4) | newest_per_bucket(spread, iso_week, 2)


def test_prune_sends_the_backup_pruned_signal(folder, spread):
    received: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs["result"])

    signals.backup_pruned.connect(receiver)
    try:
        result = services.backup_prune(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    finally:
        signals.backup_pruned.disconnect(receiver)
    assert received == [result]


def test_command_dry_run_json_and_exit_code(folder, spread):
    before = files(folder)
    out = StringIO()
    call_command("backup_prune", "--keep-last", "3", "--keep-daily", "0", "--keep-weekly", "0",
                 "--keep-monthly", "0", "--dry-run", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["dry_run"] is True
    assert {p["name"] for p in data["kept"]} == newest_per_bucket(spread, lambda m: m, 3)
    assert len(data["removed"]) == len(spread) - 3
    assert files(folder) == before


def test_command_text_output_names_what_it_removed(folder, spread):
    out = StringIO()
    call_command("backup_prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0",
                 "--keep-monthly", "0", stdout=out)
    text = out.getvalue()
    assert f"Removed: {len(spread) - 1}" in text
    assert len(files(folder)) == 1


def test_command_rejects_a_negative_count(folder, spread):
    with pytest.raises(CommandError, match="invalid count value"):
        call_command("backup_prune", "--keep-last", "-2", stderr=StringIO())
    assert len(files(folder)) == len(spread)


def test_command_accepts_unlimited(folder, spread):
    out = StringIO()
    call_command("backup_prune", "--keep-last", "0", "--keep-daily", "0", "--keep-weekly", "0",
                 "--keep-monthly", "unlimited", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["policy"]["keep_monthly"] == -1
    # Every month's newest, and, as restic does for a rule that still has counts left, the oldest backup.
    expected = newest_per_bucket(spread, month, 13) | {min(spread, key=spread.__getitem__)}
    assert len(expected) == 14
    assert {p["name"] for p in data["kept"]} == expected
    assert set(files(folder)) == expected


# -- which rules apply: restic's reading of the flags ---------------------------------------------------------
def d(month_day: str) -> str:
    return f"2025-{month_day}"


EVERY_DAY = [datetime(2025, 10, 1, 12, tzinfo=UTC) + timedelta(days=n) for n in range(71)]  # to Wed 2025-12-10
SETTINGS_KEEP = (  # the defaults 7/14/8/12: the last 14 days, 5 more week ends, October's end and the oldest
    {d(f"11-{n}") for n in range(27, 31)} | {d(f"12-{n:02}") for n in range(1, 11)}
    | {d("11-23"), d("11-16"), d("11-09"), d("11-02"), d("10-26"), d("10-31"), d("10-01")}
)


# Kept sets worked out by hand from restic's rules (restic forget with the same flags keeps the same snapshots).
@pytest.mark.parametrize(("flags", "kept"), [
    ({}, SETTINGS_KEEP),
    ({"keep_safety": 1}, SETTINGS_KEEP),
    ({"keep_weekly": 10}, {d("12-10"), d("12-07"), d("11-30"), d("11-23"), d("11-16"), d("11-09"), d("11-02"),
                           d("10-26"), d("10-19"), d("10-12")}),
    ({"keep_last": 3}, {d("12-08"), d("12-09"), d("12-10")}),
    ({"keep_daily": 2, "keep_monthly": 2}, {d("12-10"), d("12-09"), d("11-30")}),
    ({"keep_monthly": 5}, {d("12-10"), d("11-30"), d("10-31"), d("10-01")}),
    ({"keep_last": 1, "keep_weekly": 2}, {d("12-10"), d("12-07")}),
    ({"keep_daily": -1}, {m.date().isoformat() for m in EVERY_DAY}),
    ({"keep_last": 0}, {m.date().isoformat() for m in EVERY_DAY}),  # no rule left: nothing is removed
], ids=["no-flags-settings", "safety-only-settings", "weekly-10", "last-3", "daily-2-monthly-2", "monthly-5",
        "last-1-weekly-2", "daily-unlimited", "last-0"])
def test_only_the_flags_given_apply_and_without_flags_the_settings(folder, backup_env, settings, flags, kept):
    settings.TIME_ZONE = "UTC"
    settings.ADCP_BACKUP_KEEP_LAST, settings.ADCP_BACKUP_KEEP_DAILY = 7, 14
    settings.ADCP_BACKUP_KEEP_WEEKLY, settings.ADCP_BACKUP_KEEP_MONTHLY = 8, 12
    day_of = {write_backup(folder, moment): moment.date().isoformat() for moment in EVERY_DAY}
    result = services.backup_prune(**flags)
    assert {day_of[p.name] for p in result.kept} == kept
    assert {day_of[p.name] for p in result.removed} == set(day_of.values()) - kept
    assert {day_of[name] for name in files(folder)} == kept
    rules = {k: v for k, v in flags.items() if k != "keep_safety"}
    assert result.policy_source == ("flags" if rules else "settings")
    if rules:
        assert result.policy == {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0,
                                 "keep_safety": flags.get("keep_safety", 3), **rules}


def test_command_prints_where_the_policy_comes_from(folder, backup_env):
    for moment in EVERY_DAY[-20:]:
        write_backup(folder, moment)
    out = StringIO()
    call_command("backup_prune", "--keep-weekly", "10", "--dry-run", stdout=out)
    assert ("Policy from the --keep-* flags given; the rules not given keep nothing: keep-last 0, keep-daily 0, "
            "keep-weekly 10, keep-monthly 0, keep-safety 3") in out.getvalue()
    out = StringIO()
    call_command("backup_prune", "--dry-run", stdout=out)
    assert ("Policy from the ADCP_BACKUP_KEEP_* settings, as no --keep-* flag was given: keep-last 7, "
            "keep-daily 14, keep-weekly 8, keep-monthly 12, keep-safety 3") in out.getvalue()
    out = StringIO()
    call_command("backup_prune", "--keep-last", "2", "--dry-run", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["policy_source"] == "flags" and len(data["kept"]) == 2
