"""PostgreSQL reads fetch the next batch from a thread of their own while the caller works on this one: every row
comes once and in order, an error of the server reaches the caller, and a reader stopped early leaves no thread
behind and the connection usable."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError, connections, transaction

from adcp_backup import dataset
from adcp_backup.db import get_engine
from adcp_backup.db.base import prefetched_batches

from .helpers import engine_aliases

pytestmark = [
    pytest.mark.engines,
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif("postgresql" not in engine_aliases(), reason="ADCP_TEST_POSTGRES_URL is not set"),
]
ALIAS = "postgresql"


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "adcp-prefetch"]


def named_cursor(sql: str):  # type: ignore[no-untyped-def]
    raw = get_engine(ALIAS)._raw()
    cursor = raw.cursor(name="adcp_prefetch_test")
    cursor.execute(sql)
    return cursor


def test_every_row_comes_once_and_in_order(seeded):
    seeded(ALIAS)
    engine = get_engine(ALIAS)
    spec = dataset.table("product")
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT id, name FROM product ORDER BY id")
        expected = [tuple(row) for row in cursor.fetchall()]

    batches = list(engine.read_rows(spec, ["id", "name"], batch_size=7))

    assert [tuple(row) for batch in batches for row in batch] == expected
    assert {len(batch) for batch in batches[:-1]} == {7}
    assert prefetch_threads() == []


def test_a_reader_stopped_early_leaves_no_thread_and_the_connection_usable(seeded):
    seeded(ALIAS)
    with transaction.atomic(using=ALIAS):
        cursor = named_cursor("SELECT id FROM product ORDER BY id")
        batches = prefetched_batches(cursor, 5)
        assert [row[0] for row in next(batches)] == [1, 2, 3, 4, 5]
        time.sleep(0.3)  # the thread has fetched the next batch and waits to hand over one more
        closing = threading.Thread(target=batches.close)
        closing.start()
        closing.join(timeout=10)
        assert not closing.is_alive()  # closing does not wait forever on the waiting thread
        assert prefetch_threads() == []
        cursor.close()
        with connections[ALIAS].cursor() as check:
            check.execute("SELECT COUNT(*) FROM product")
            assert check.fetchone()[0] == 60


def test_an_error_of_the_server_while_fetching_reaches_the_caller(seeded):
    seeded(ALIAS)
    received: list[int] = []
    with pytest.raises(DatabaseError, match="division by zero"):
        with transaction.atomic(using=ALIAS), connections[ALIAS].wrap_database_errors:
            cursor = named_cursor("SELECT 100 / (30 - id) FROM product ORDER BY id")  # fails at row 30, lazily
            for batch in prefetched_batches(cursor, 4):
                received.extend(row[0] for row in batch)
    assert len(received) in range(24, 30)  # the batches before the one holding row 30
    assert prefetch_threads() == []
