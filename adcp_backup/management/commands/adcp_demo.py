"""adcp_demo: create the AdCP schema if it is missing and fill it with deterministic demo data."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import demo
from ...exceptions import BackupError
from ..base import BackupCommand, format_counts


class Command(BackupCommand):
    help = "Create the AdCP tables when missing and seed deterministic demo data and settings files."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--tenants", type=int, default=6)
        parser.add_argument("--products", type=int, default=1250)
        parser.add_argument("--agents", type=int, default=1)
        parser.add_argument("--embeddings", type=int, default=50)
        parser.add_argument("--dim", type=int, default=768, help="Embedding dimension.")
        parser.add_argument("--seed", type=int, default=20250830, help="Random seed.")
        parser.add_argument("--reset", action="store_true", help="Replace rows that are already there.")

    def handle(self, *args: Any, database: str, tenants: int, products: int, agents: int, embeddings: int,
               dim: int, seed: int, reset: bool, as_json: bool, **options: Any) -> None:
        if min(tenants, products, agents, embeddings) < 0 or tenants < 1 or dim < 1:
            raise CommandError("Sizes must be positive (at least one tenant, dimension at least 1).")
        size = demo.DemoSize(tenants=tenants, products=products, agents=agents, embeddings=embeddings, dim=dim)
        try:
            written = demo.seed(database=database, size=size, reset=reset, random_seed=seed)
            files = demo.write_settings_files()
        except BackupError as exc:
            raise self.fail(exc, as_json=as_json) from exc
        if as_json:
            self.emit_json({"seeded": written, "settings_files": [str(f) for f in files]})
            return
        if written:
            self.stdout.write(self.style.SUCCESS(f"Demo data written: {format_counts(written)}"))
        else:
            self.stdout.write("The AdCP tables already hold data; left as they are (use --reset to replace them).")
        for path in files:
            self.stdout.write(f"Settings file written: {path}")
