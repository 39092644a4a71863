#!/usr/bin/env python
"""Mutation testing of chosen modules with mutmut, and a score per module (docs/testing.md).

    python scripts/mutation.py                        # the default modules, from a fresh mutants/ folder
    python scripts/mutation.py adcp_backup/retention.py adcp_backup/storage.py:BackupStorage.resolve
    python scripts/mutation.py --report               # the scores of the last run, without running anything

A module is a path listed in ``[tool.mutmut] only_mutate`` (pyproject.toml), optionally followed by
``:name,Class.method`` to score only those functions. Each mutant runs against the tests that call the
function it changes, found by mutmut among the files of ``pytest_add_cli_args_test_selection``, on SQLite
only. A surviving mutant counts as equivalent, and so as killed, only when docs/testing.md names it.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "testing.md"
# The modules that decide what is secret, what is trusted and what is deleted; storage only for its name checks.
DEFAULT_MODULES = [
    "adcp_backup/settings_files.py",
    "adcp_backup/signing.py",
    "adcp_backup/storage.py:BackupStorage.resolve,BackupStorage.names,BackupStorage.exists,BackupStorage.require",
    "adcp_backup/naming.py",
    "adcp_backup/retention.py",
    "adcp_backup/validation.py",
    "adcp_backup/format/values.py",
    "adcp_backup/format/writer.py",
]
# mutmut's exit codes (mutmut/stats.py): 1 and 3 failed tests, 0 passed, timeouts by signal, 37 type checker.
KILLED = {1, 3, 24, -24, 36, 152, 255, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}
# Mutmut names a mutant <dotted module>.x_<function>__mutmut_<n> or <dotted module>.xǁ<Class>ǁ<method>__mutmut_<n>.
SEPARATOR = "\u01c1"
MUTANT_NAME = re.compile(r"`(adcp_backup\.[\w.\u01c1]+__mutmut_\d+)`")


@dataclass
class Target:
    path: str
    functions: list[str]

    @property
    def label(self) -> str:
        return self.path.removeprefix("adcp_backup/") + (f" ({', '.join(self.functions)})" if self.functions else "")

    @property
    def patterns(self) -> list[str]:
        """Mutmut's names for this module's mutants (fnmatch patterns, as ``mutmut run`` takes them)."""
        module = self.path.removesuffix(".py").replace("/", ".")
        if not self.functions:
            return [f"{module}.*"]
        patterns = []
        for function in self.functions:
            owner, _, name = function.rpartition(".")
            mangled = f"x{SEPARATOR}{owner}{SEPARATOR}{name}" if owner else f"x_{name}"
            patterns.append(f"{module}.{mangled}__mutmut_*")
        return patterns


@dataclass
class Score:
    target: Target
    total: int = 0
    killed: int = 0
    equivalent: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # no test reached it, or the run stopped first

    @property
    def score(self) -> float:
        return 100.0 * (self.killed + len(self.equivalent)) / self.total if self.total else 0.0


def parse_target(text: str) -> Target:
    path, _, functions = text.partition(":")
    return Target(path, [f for f in functions.split(",") if f])


def equivalent_mutants() -> set[str]:
    """The mutants docs/testing.md explains as equivalent: named in backquotes under "## Equivalent mutants"."""
    if not DOCS.exists():
        return set()
    section = DOCS.read_text("utf-8").partition("\n## Equivalent mutants\n")[2].partition("\n## ")[0]
    return set(MUTANT_NAME.findall(section))


def mutation_environment() -> dict[str, str]:
    """SQLite only: the other engines' URLs are dropped, so no mutant ever touches a shared server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCP_TEST_") and k != "CELERY_BROKER_URL"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    # Each mutant's tests run in a process forked from mutmut's: keep the test database between them.
    env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " --reuse-db").strip()
    return env


def results_of(target: Target) -> dict[str, int | None]:
    """The target's mutants and mutmut's exit code for each (None: not run yet), from mutants/<module>.meta."""
    meta = ROOT / "mutants" / (target.path + ".meta")
    if not meta.exists():
        return {}
    exit_codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return {name: code for name, code in sorted(exit_codes.items())
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in target.patterns)}


def run(targets: list[Target], *, keep: bool, children: int) -> int:
    """Run mutmut on the targets' mutants: all of them in a fresh mutants/ folder, or with ``keep`` only those the
    last run left unchecked or surviving (tests added since may kill them; a killed mutant stays killed)."""
    if keep and (ROOT / "mutants").is_dir():
        names = [name for target in targets for name, code in results_of(target).items()
                 if code is None or code in SURVIVED or code in NO_TESTS]
        if not names and all(results_of(target) for target in targets):
            return 0
        selection = names or [pattern for target in targets for pattern in target.patterns]
    else:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        selection = [pattern for target in targets for pattern in target.patterns]
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut), "run", "--max-children", str(children), *selection]
    return subprocess.call(command, cwd=ROOT, env=mutation_environment())


def scores(targets: list[Target]) -> list[Score]:
    explained = equivalent_mutants()
    results = []
    for target in targets:
        score = Score(target)
        for name, code in results_of(target).items():
            score.total += 1
            if code in KILLED:
                score.killed += 1
            elif code in SURVIVED and name in explained:
                score.equivalent.append(name)
            elif code in SURVIVED:
                score.survivors.append(name)
            else:
                score.unchecked.append(name)
        results.append(score)
    return results


def report(results: list[Score]) -> str:
    lines = [f"mutmut {version('mutmut')}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             "| module | mutants | killed | equivalent | score |", "|---|---|---|---|---|"]
    for s in results:
        lines.append(f"| {s.target.label} | {s.total} | {s.killed} | {len(s.equivalent)} | {s.score:.1f} % |")
    for s in results:
        if s.survivors:
            lines += ["", f"{s.target.label}: {len(s.survivors)} survived, neither killed nor explained as equivalent "
                          "(mutmut show NAME shows the change):", *(f"    {name}" for name in s.survivors)]
        if s.unchecked:
            lines += ["", f"{s.target.label}: {len(s.unchecked)} not checked (no test calls the function, or the "
                          "run stopped):", *(f"    {name}" for name in s.unchecked)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modules", nargs="*", help="paths from [tool.mutmut] only_mutate, optionally :functions")
    parser.add_argument("--report", action="store_true", help="only print the scores of the last run")
    parser.add_argument("--keep", action="store_true",
                        help="reuse mutants/ and run only the mutants the last run left unchecked or surviving")
    parser.add_argument("--children", type=int, default=1,
                        help="mutants tested at once (default 1: the tests share one SQLite test database file)")
    args = parser.parse_args(argv)
    targets = [parse_target(text) for text in (args.modules or DEFAULT_MODULES)]
    mutated = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["mutmut"]["only_mutate"]
    missing = [t.path for t in targets if t.path not in mutated]
    if missing:
        parser.error(f"{', '.join(missing)}: add it to [tool.mutmut] only_mutate in pyproject.toml first")
    if not args.report:
        returncode = run(targets, keep=args.keep, children=args.children)
        if returncode != 0:
            print(f"mutmut stopped with exit code {returncode}", file=sys.stderr)
            return returncode
    print(report(scores(targets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
