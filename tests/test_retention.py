"""Retention on a real folder of real backups spread over 400 days: restic's rules, exactly, and --dry-run."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from adcp_backup import retention, services, signals

from . import forge
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
    kept = [(p.created_at[:10] if p.created_at else None, p.reasons) for p in result.kept]
    month_ends = ["2025-10-31", "2025-09-30", "2025-08-31", "2025-07-31", "2025-06-30", "2025-05-31", "2025-04-30",
                  "2025-03-31", "2025-02-28", "2025-01-31", "2024-12-31"]
    assert kept == [
        ("2025-11-30", ("daily backup", "weekly backup", "monthly backup", "newest valid backup")),
        *[(f"2025-11-{day}", ("daily backup",)) for day in range(29, 23, -1)],
        *[(f"2025-11-{day:02}", ("weekly backup",)) for day in (23, 16, 9, 2)],
        *[(end, ("monthly backup",)) for end in month_ends],
    ]
    assert len(result.removed) == 400 - len(kept)
    assert {p.reasons for p in result.removed} == {("matched no rule",)}


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
    removed = {p.name: p.reasons for p in result.removed}
    assert removed == {**{name: ("matched no rule",) for name in set(spread) - set(regular_newest)},
                       **{name: ("safety backup beyond the newest 2",) for name in [*safety[:3], old_safety]}}
    assert set(files(folder)) == set(regular_newest) | set(safety[-2:])


def test_defaults_come_from_settings(folder, spread, settings):
    settings.ADCP_BACKUP_KEEP_LAST = 4
    settings.ADCP_BACKUP_KEEP_DAILY = 0
    settings.ADCP_BACKUP_KEEP_WEEKLY = 2
    settings.ADCP_BACKUP_KEEP_MONTHLY = 0
    result = services.backup_prune(dry_run=True)
    assert result.policy == {"keep_last": 4, "keep_daily": 0, "keep_weekly": 2, "keep_monthly": 0, "keep_safety": 3,
                             "keep_tenant": 3}
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
                                 "keep_safety": flags.get("keep_safety", 3), "keep_tenant": 3, **rules}


def test_command_prints_where_the_policy_comes_from(folder, backup_env):
    for moment in EVERY_DAY[-20:]:
        write_backup(folder, moment)
    out = StringIO()
    call_command("backup_prune", "--keep-weekly", "10", "--dry-run", stdout=out)
    assert ("Policy from the --keep-* flags given; the rules not given keep nothing: keep-last 0, keep-daily 0, "
            "keep-weekly 10, keep-monthly 0, keep-safety 3, keep-tenant 3") in out.getvalue()
    out = StringIO()
    call_command("backup_prune", "--dry-run", stdout=out)
    assert ("Policy from the ADCP_BACKUP_KEEP_* settings, as no --keep-* flag was given: keep-last 7, "
            "keep-daily 14, keep-weekly 8, keep-monthly 12, keep-safety 3, keep-tenant 3") in out.getvalue()
    out = StringIO()
    call_command("backup_prune", "--keep-last", "2", "--dry-run", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["policy_source"] == "flags" and len(data["kept"]) == 2


# -- the rules as functions: every decision and its reasons, on small hand-made lists ----------------------------
@dataclass(frozen=True)
class Listed:
    """A listed backup as retention sees it (what services.BackupEntry offers)."""

    name: str
    created: datetime | None
    purpose: str | None = "manual"
    error: str | None = None
    size: int = 100

    @property
    def created_at(self) -> str | None:
        return self.created.isoformat() if self.created else None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def decided(items: list[Listed], policy: retention.Policy, tz: Any = UTC) -> list[tuple[str, bool, tuple[str, ...]]]:
    return [(d.item.name, d.keep, d.reasons) for d in retention.apply_policy(items, policy, tz)]


def test_every_decision_names_each_rule_that_keeps_the_backup() -> None:
    items = [Listed(name, at(when)) for name, when in [
        ("mar-31", "2025-03-31T09:00"), ("apr-01-late", "2025-04-01T20:00"), ("apr-01-early", "2025-04-01T08:00"),
        ("apr-02", "2025-04-02T08:00"), ("apr-07", "2025-04-07T08:00"), ("may-05", "2025-05-05T08:00"),
    ]]
    policy = retention.Policy(last=2, daily=3, weekly=2, monthly=2)
    assert decided(items, policy) == [  # newest first, whatever order the list came in
        ("may-05", True, ("last backup", "daily backup", "weekly backup", "monthly backup")),
        ("apr-07", True, ("last backup", "daily backup", "weekly backup", "monthly backup")),
        ("apr-02", True, ("daily backup",)),  # weekly and monthly have their two already
        ("apr-01-late", False, ()),
        ("apr-01-early", False, ()),
        ("mar-31", False, ()),
    ]


def test_a_rule_that_has_kept_its_count_does_not_stop_the_rules_after_it() -> None:
    # keep_weekly 1 is spent on the newest backup; keep_monthly must still see the two older months.
    items = [Listed("jan", at("2025-01-15T12:00")), Listed("feb", at("2025-02-12T12:00")),
             Listed("mar-10", at("2025-03-10T12:00")), Listed("mar-12", at("2025-03-12T12:00"))]
    assert decided(items, retention.Policy(weekly=1, monthly=3)) == [
        ("mar-12", True, ("weekly backup", "monthly backup")),
        ("mar-10", False, ()),
        ("feb", True, ("monthly backup",)),
        ("jan", True, ("monthly backup",)),
    ]
    assert decided(items, retention.Policy(last=1, daily=1, weekly=1, monthly=3)) == [
        ("mar-12", True, ("last backup", "daily backup", "weekly backup", "monthly backup")),
        ("mar-10", False, ()),
        ("feb", True, ("monthly backup",)),
        ("jan", True, ("monthly backup",)),
    ]


def test_a_rule_with_fewer_buckets_than_its_count_keeps_the_oldest_once() -> None:
    items = [Listed("jun-2", at("2025-06-02T12:00")), Listed("jun-1", at("2025-06-01T12:00")),
             Listed("may-2", at("2025-05-20T12:00")), Listed("may-1", at("2025-05-02T12:00"))]
    assert decided(items, retention.Policy(monthly=5)) == [
        ("jun-2", True, ("monthly backup",)),
        ("jun-1", False, ()),
        ("may-2", True, ("monthly backup",)),
        ("may-1", True, ("oldest monthly backup",)),
    ]
    # The oldest in a month of its own is that month's backup, not "oldest"; a spent rule keeps no oldest.
    assert decided(items[:3], retention.Policy(monthly=5)) == [
        ("jun-2", True, ("monthly backup",)), ("jun-1", False, ()), ("may-2", True, ("monthly backup",))]
    assert decided(items, retention.Policy(monthly=1)) == [
        ("jun-2", True, ("monthly backup",)), ("jun-1", False, ()), ("may-2", False, ()), ("may-1", False, ())]
    assert decided(items, retention.Policy(last=3)) == [
        ("jun-2", True, ("last backup",)), ("jun-1", True, ("last backup",)), ("may-2", True, ("last backup",)),
        ("may-1", False, ())]
    assert decided(items, retention.Policy(last=-1)) == [
        (item.name, True, ("last backup",)) for item in items]


def test_a_negative_count_keeps_every_bucket() -> None:
    items = [Listed(f"m{month}", at(f"2024-{month:02}-10T12:00")) for month in range(1, 13)]
    kept = decided(items, retention.Policy(monthly=-1))
    assert [name for name, keep, _ in kept if keep] == [f"m{month}" for month in range(12, 0, -1)]
    assert {reasons for _, _, reasons in kept} == {("monthly backup",)}


@pytest.mark.parametrize(("policy", "older", "newer"), [
    # The same day, ISO week or month number in another year (or month) is another bucket.
    (retention.Policy(daily=5), "2024-03-05T12:00", "2025-03-05T12:00"),
    (retention.Policy(daily=5), "2025-02-05T12:00", "2025-03-05T12:00"),
    (retention.Policy(daily=5), "2025-03-04T12:00", "2025-03-05T12:00"),
    (retention.Policy(weekly=5), "2024-03-06T12:00", "2025-03-05T12:00"),  # both in ISO week 10
    (retention.Policy(monthly=5), "2024-03-05T12:00", "2025-03-05T12:00"),
    (retention.Policy(monthly=5), "2025-02-05T12:00", "2025-03-05T12:00"),
])
def test_buckets_are_whole_calendar_days_iso_weeks_and_months(policy: Any, older: Any, newer: Any) -> None:
    rule = next(name for name, count in policy.as_dict().items() if count).removeprefix("keep_")
    items = [Listed("older", at(older)), Listed("newer", at(newer)), Listed("oldest", at("2023-01-01T00:00"))]
    assert decided(items, policy)[:2] == [("newer", True, (f"{rule} backup",)), ("older", True, (f"{rule} backup",))]


def test_iso_weeks_run_monday_to_sunday_and_across_the_new_year() -> None:
    items = [Listed("mon-dec-29", at("2025-12-29T08:00")), Listed("sun-jan-4", at("2026-01-04T20:00")),
             Listed("sun-dec-28", at("2025-12-28T20:00"))]
    assert decided(items, retention.Policy(weekly=2)) == [
        ("sun-jan-4", True, ("weekly backup",)),  # 2026-W01 runs from Monday 2025-12-29
        ("mon-dec-29", False, ()),
        ("sun-dec-28", True, ("weekly backup",)),
    ]


def test_days_are_cut_in_the_given_time_zone() -> None:
    items = [Listed("utc-23h", at("2025-03-01T23:00")), Listed("utc-01h", at("2025-03-01T01:00"))]
    assert decided(items, retention.Policy(daily=2), UTC) == [("utc-23h", True, ("daily backup",)),
                                                               ("utc-01h", True, ("oldest daily backup",))]
    # 08:00 and 10:00 on 2 March in Tokyo: two days, each with its own backup.
    assert decided(items, retention.Policy(daily=2), ZoneInfo("Asia/Tokyo")) == [
        ("utc-23h", True, ("daily backup",)), ("utc-01h", True, ("daily backup",))]


@pytest.mark.parametrize("policy", [retention.Policy(last=1), retention.Policy(daily=1), retention.Policy(weekly=1),
                                    retention.Policy(monthly=1), retention.Policy(daily=-1)])
def test_a_policy_with_any_count_is_not_empty(policy: Any) -> None:
    assert not policy.empty


def test_a_policy_of_zero_counts_keeps_everything_and_says_so() -> None:
    items = [Listed("a", at("2025-01-01T00:00")), Listed("b", at("2025-01-02T00:00"))]
    assert retention.Policy().empty
    assert decided(items, retention.Policy()) == [("b", True, ("no retention rule set",)),
                                                   ("a", True, ("no retention rule set",))]
    assert retention.Policy(1, 2, 3, 4).as_dict() == {"keep_last": 1, "keep_daily": 2, "keep_weekly": 3,
                                                      "keep_monthly": 4}


def pruned(name: str, item: Listed, *reasons: str) -> retention.PrunedFile:
    return retention.PrunedFile(name, item.created_at, item.purpose, item.size, reasons)


def test_a_prune_plan_keeps_skips_and_removes_each_backup_for_its_reasons() -> None:
    new = Listed("new", at("2025-06-03T12:00"), size=300)
    broken_newer = Listed("broken-newer", at("2025-06-04T12:00"), size=400)
    mid = Listed("mid", at("2025-06-02T12:00"), size=200)
    old = Listed("old", at("2025-05-01T12:00"))
    undated = Listed("undated", None)
    unreadable = Listed("unreadable", None, purpose=None, error="truncated gzip stream")
    safety = [Listed(f"safety-{n}", at(f"2025-06-0{n}T06:00"), purpose="safety") for n in (1, 2, 3)]
    asked: list[str] = []

    def is_valid(entry: retention.Entry) -> bool:
        asked.append(entry.name)
        return entry.name != "broken-newer"

    entries = [old, unreadable, safety[0], new, undated, safety[2], mid, broken_newer, safety[1]]
    plan = retention.plan_prune(entries, retention.Policy(last=1), keep_safety=2, tz=UTC, is_valid=is_valid)
    assert asked == ["broken-newer", "new"]  # newest first, and no further than the first valid one
    assert plan.kept == [
        pruned("broken-newer", broken_newer, "last backup"),
        pruned("new", new, "newest valid backup"),
        pruned("safety-3", safety[2], "safety backup, one of the newest 2"),
        pruned("safety-2", safety[1], "safety backup, one of the newest 2"),
    ]
    assert plan.removed == [
        pruned("mid", mid, "matched no rule"),
        pruned("old", old, "matched no rule"),
        pruned("safety-1", safety[0], "safety backup beyond the newest 2"),
    ]
    assert plan.skipped == [
        pruned("unreadable", unreadable, "not a readable backup: truncated gzip stream"),
        pruned("undated", undated, "no creation time in its header"),
    ]


def test_the_newest_valid_backup_adds_its_reason_to_the_rules_reasons() -> None:
    items = [Listed("b", at("2025-06-02T12:00")), Listed("a", at("2025-06-01T12:00"))]
    plan = retention.plan_prune(items, retention.Policy(last=1), keep_safety=0, tz=UTC, is_valid=lambda e: True)
    assert plan.kept == [pruned("b", items[0], "last backup", "newest valid backup")]
    assert plan.removed == [pruned("a", items[1], "matched no rule")]
    none_valid = retention.plan_prune(items, retention.Policy(last=1), keep_safety=0, tz=UTC,
                                      is_valid=lambda e: False)
    assert none_valid.kept == [pruned("b", items[0], "last backup")]


@pytest.mark.parametrize(("keep_safety", "kept"), [(0, []), (1, ["s3"]), (2, ["s3", "s2"]), (-1, ["s3", "s2", "s1"])])
def test_safety_backups_keep_their_own_count_and_zero_keeps_none(keep_safety: Any, kept: Any) -> None:
    items = [Listed(f"s{n}", at(f"2025-06-0{n}T12:00"), purpose="safety") for n in (2, 1, 3)]
    plan = retention.plan_prune(items, retention.Policy(last=5), keep_safety=keep_safety, tz=UTC,
                                is_valid=lambda e: True)
    by_name = {item.name: item for item in items}
    assert plan.kept == [pruned(n, by_name[n], f"safety backup, one of the newest {keep_safety}") for n in kept]
    assert plan.removed == [pruned(n, by_name[n], f"safety backup beyond the newest {keep_safety}")
                            for n in ["s3", "s2", "s1"] if n not in kept]
    assert plan.skipped == []


def test_a_prune_plan_cuts_days_in_the_time_zone_it_is_given() -> None:
    # 23:00 and 01:00 UTC on 1 March are 2 March in Tokyo (+9): two days there, one day in UTC.
    items = [Listed("utc-23h", at("2025-03-01T23:00")), Listed("utc-01h", at("2025-03-01T01:00")),
             Listed("feb", at("2025-02-20T12:00"))]
    plan = retention.plan_prune(items, retention.Policy(daily=2), keep_safety=0, tz=ZoneInfo("Asia/Tokyo"),
                                is_valid=lambda e: False)
    assert plan.kept == [pruned("utc-23h", items[0], "daily backup"), pruned("utc-01h", items[1], "daily backup")]
    assert plan.removed == [pruned("feb", items[2], "matched no rule")]


@dataclass(frozen=True)
class Scoped(Listed):
    tenants: tuple[str, ...] = ()


def test_tenant_backups_keep_their_own_count_and_never_push_a_whole_backup_out() -> None:
    whole = [Listed(f"whole-{n}", at(f"2025-06-0{n}T02:00")) for n in (1, 2)]
    tenant = [Scoped(f"acme-{n}", at(f"2025-06-0{n}T12:00"), tenants=("acme",)) for n in (1, 2, 3, 4)]
    safety = Scoped("safety-acme", at("2025-06-05T12:00"), purpose="safety", tenants=("acme",))
    asked: list[str] = []

    def is_valid(entry: retention.Entry) -> bool:
        asked.append(entry.name)
        return True

    plan = retention.plan_prune([*tenant, safety, *whole], retention.Policy(last=1, daily=1), keep_safety=1,
                                tz=UTC, is_valid=is_valid, keep_tenant=2,
                                is_tenant=lambda entry: bool(getattr(entry, "tenants", ())))
    assert asked == ["whole-2"]  # a tenant backup is never the newest valid backup
    assert plan.kept == [
        pruned("whole-2", whole[1], "last backup", "daily backup", "newest valid backup"),
        pruned("safety-acme", safety, "safety backup, one of the newest 1"),  # a safety backup first
        pruned("acme-4", tenant[3], "tenant backup, one of the newest 2"),
        pruned("acme-3", tenant[2], "tenant backup, one of the newest 2"),
    ]
    assert plan.removed == [
        pruned("whole-1", whole[0], "matched no rule"),
        pruned("acme-2", tenant[1], "tenant backup beyond the newest 2"),
        pruned("acme-1", tenant[0], "tenant backup beyond the newest 2"),
    ]


def write_tenant_backup(folder: Path, created_at: datetime) -> str:
    """A signed backup of the tenant acme alone, as backup_create(tenants=["acme"]) writes one."""
    name = write_backup(folder, created_at)

    def scoped(lines: list[forge.Line]) -> list[forge.Line]:
        return [{**forge.header(lines), "scope": {"tenants": ["acme"], "global": []}}, *lines[1:]]

    forge.forge(folder / name, folder / name, scoped)
    return name


def test_prune_keeps_tenant_backups_apart_from_whole_database_backups(
        folder: Any, backup_env: Any, settings: Any,
) -> None:
    whole = write_backup(folder, datetime(2025, 6, 1, 2, tzinfo=UTC))
    tenant = [write_tenant_backup(folder, datetime(2025, 6, 1 + n, 12, tzinfo=UTC)) for n in range(4)]
    settings.ADCP_BACKUP_KEEP_TENANT = 3
    result = services.backup_prune(keep_last=1, dry_run=True)
    assert result.policy["keep_tenant"] == 3
    assert [(p.name, p.reasons) for p in result.kept] == [
        (whole, ("last backup", "newest valid backup")),
        *[(name, ("tenant backup, one of the newest 3",)) for name in reversed(tenant[1:])]]
    assert [(p.name, p.reasons) for p in result.removed] == [(tenant[0], ("tenant backup beyond the newest 3",))]
    out = StringIO()
    call_command("backup_prune", "--keep-last", "1", "--keep-tenant", "unlimited", "--dry-run", "--json", stdout=out)
    assert [p["name"] for p in json.loads(out.getvalue())["kept"]] == [whole, *reversed(tenant)]
    result = services.backup_prune(keep_last=1, keep_tenant=0)
    assert [p.name for p in result.kept] == [whole]
    assert set(files(folder)) == {whole}
