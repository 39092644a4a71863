"""Deterministic demo data for the AdCP tables, full of the values that break naive backup tools."""
from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction

from . import dataset
from .conf import backup_settings
from .db import get_engine
from .db.base import Engine, shipped_ddl
from .exceptions import BackupError

BASE_TIME = datetime(2025, 8, 30, 7, 28, 26, 672543)
TEXTS = [
    'Premium "homepage" takeover',
    "Back\\slash and 'single' quotes",
    "Café crème, déjà vu, Ærøskøbing",
    "東京の広告枠 (CJK) 和 中文 한국어",
    "Rocket 🚀 launch, family 👨‍👩‍👧, flag 🇫🇷",
    "Line one\nline two\ttabbed\r\nwindows line",
    "Nul-free control chars: \x01\x1f and \u2028 separator",
    "Plain banner",
]


@dataclass(frozen=True)
class DemoSize:
    tenants: int = 6
    products: int = 1250
    agents: int = 1
    embeddings: int = 50
    dim: int = 768


def ensure_schema(engine: Engine) -> bool:
    """Create the AdCP schema (the application's own DDL) when none of its tables exist."""
    existing = engine.existing_tables()
    missing = [t for t in dataset.table_names() if t not in existing]
    if not missing:
        return False
    if len(missing) != len(dataset.table_names()):
        raise BackupError(f"The database has some AdCP tables but lacks {', '.join(missing)}; fix it by hand.")
    with transaction.atomic(using=engine.alias):
        engine.create_schema(shipped_ddl(engine.vendor))
    return True


def _stamp(rng: random.Random, offset: int) -> str:
    moment = BASE_TIME + timedelta(seconds=offset * 37, microseconds=rng.randrange(1_000_000))
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def tenant_rows(size: DemoSize, rng: random.Random) -> list[list[Any]]:
    rows = []
    for i in range(1, size.tenants + 1):
        prompt = None if i % 3 == 0 else f"You sell ads for publisher {i}.\nBe concise; quote \"prices\" in €."
        grounding = None if i % 2 else TEXTS[i % len(TEXTS)]
        rows.append([i, f"Publisher {i} — {TEXTS[i % len(TEXTS)][:20]}", f"publisher-{i}", prompt, grounding,
                     i % 2, _stamp(rng, i)])
    return rows


def product_rows(size: DemoSize, rng: random.Random) -> Iterator[list[list[Any]]]:
    owners = max(1, size.tenants - 1) if size.tenants > 1 else 1  # the last tenant has no products
    batch: list[list[Any]] = []
    specials = [0.1 + 0.2, 1e-300, 123456789.123456789, 2.5, 0.0, 1 / 3]
    for i in range(1, size.products + 1):
        text = TEXTS[i % len(TEXTS)]
        description = None if i % 7 == 0 else f"{text}\nProduct {i} description with \\ backslash and \"quotes\"."
        price = specials[i % len(specials)] if i % 50 == 0 else rng.random() * 50
        formats = json.dumps([{"type": "display", "size": f"{300 + i % 5}x250"}, {"type": "vidéo"}],
                             ensure_ascii=i % 2 == 0)
        targeting = None if i % 5 == 0 else json.dumps({"geo": ["FR", "日本"], "age": [18, 34]}, ensure_ascii=False)
        batch.append([i, (i - 1) % owners + 1, f"{text[:30]} #{i}", description, price,
                      "guaranteed" if i % 3 else "non_guaranteed", formats, targeting, _stamp(rng, i)])
        if len(batch) >= 5000:
            yield batch
            batch = []
    if batch:
        yield batch


def agent_rows(size: DemoSize, rng: random.Random) -> list[list[Any]]:
    return [[i, f"Agent {i} «signals»", f"https://agent{i}.example.com/mcp", 1 if i % 2 else 0,
             "signals", "mcp", _stamp(rng, i)] for i in range(1, size.agents + 1)]


def embedding_rows(size: DemoSize, rng: random.Random) -> Iterator[list[list[Any]]]:
    batch: list[list[Any]] = []
    stale_values = [0, 1, None]
    for i in range(1, min(size.embeddings, size.products) + 1):
        vector = [rng.gauss(0.0, 1.0) for _ in range(size.dim)]
        blob = struct.pack(f"<{size.dim}f", *vector)
        text = f"{TEXTS[i % len(TEXTS)]} product {i}"
        provider, model = ("gemini", "text-embedding-004") if i % 4 else (None, None)
        updated = (BASE_TIME + timedelta(hours=i)).isoformat()
        batch.append([i, i, text, hashlib.sha256(text.encode()).hexdigest(), blob, provider, model, size.dim,
                      updated, stale_values[i % 3], (BASE_TIME + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")])
        if len(batch) >= 1000:
            yield batch
            batch = []
    if batch:
        yield batch


def seed(*, database: str = "default", size: DemoSize = DemoSize(), reset: bool = False,
         random_seed: int = 20250830) -> dict[str, int]:
    """Create the schema if needed and fill it; a database that already has rows is left alone unless reset."""
    engine = get_engine(database)
    ensure_schema(engine)
    counts = {t: engine.count(t) for t in dataset.table_names()}
    if any(counts.values()) and not reset:
        return {}
    rng = random.Random(random_seed)
    generators = {
        "tenant": iter([tenant_rows(size, rng)]),
        "product": product_rows(size, rng),
        "externalagent": iter([agent_rows(size, rng)]),
        "product_embeddings": embedding_rows(size, rng),
    }
    written: dict[str, int] = {}
    with engine.connection.wrap_database_errors, transaction.atomic(using=database):
        for spec in reversed(dataset.tables()):
            engine.delete_rows(spec.name)
        for spec in dataset.tables():
            columns = spec.column_names
            families = [c.family for c in spec.columns]
            written[spec.name] = 0
            for rows in generators[spec.name]:
                rows = engine.adapt_rows(spec, columns, families, rows, "sqlite")
                engine.insert_rows(spec, columns, rows)
                written[spec.name] += len(rows)
            engine.reset_sequence(spec, None)
    return written


def write_settings_files(*, overwrite: bool = False) -> list[Path]:
    """The two legacy settings files, with non-ASCII content, where they do not exist yet."""
    contents = {
        "app_settings.json": {
            "embeddings_provider": "gemini",
            "rag_top_k": 8,
            "orchestrator_timeout": 12.5,
            "greeting": "Bonjour, 世界 👋",
        },
        "tenant_settings.json": {
            "tenant_prompts": {"publisher-1": "Sell premium inventory.\nAlways answer in français."},
            "tenant_configurations": {"publisher-2": {"max_products": 25, "web_context": True}},
        },
    }
    written = []
    for path in backup_settings.SETTINGS_FILES:
        if path.exists() and not overwrite:
            continue
        body = contents.get(path.name, {"demo": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
