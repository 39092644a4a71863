"""MariaDB through either driver (CI runs PyMySQL on one Django version and mysqlclient on the other).

A restore stores one batch while it builds the next (a thread of its own sends the INSERTs). Whatever happens,
the rows end as they would without it, an error of a batch in flight fails the restore and changes nothing, no
other statement overtakes a batch, and the thread is gone when the restore ends. A backup takes DATETIMEs from
the driver as text: the lines it writes are the ones the canonical encoder gives for datetime objects."""
from __future__ import annotations

import json
import math
import os
import random
import struct
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connections

from adcp_backup import dataset, demo, services
from adcp_backup.exceptions import InvalidBackup, RestoreError
from adcp_backup.format.values import row_encoder

from .helpers import engine_aliases, table_state
from .test_services import _rechecksum

pytestmark = [
    pytest.mark.engines,
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif("mysql" not in engine_aliases(), reason="ADCP_TEST_MYSQL_URL is not set"),
]
ALIAS = "mysql"


def sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("adcp-mysql-insert")]


def first_line(lines: list[bytes], table: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(b'{"kind":"table","name":"%s"' % table.encode()))


def rewritten_backup(folder: Path, table: str, row: int, rewrite: Callable[[bytes], bytes]) -> Path:
    """A new uncompressed backup with one row line of ``table`` rewritten, its checksums made valid again."""
    result = services.backup_create(database=ALIAS, compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    at = first_line(lines, table) + row
    lines[at] = rewrite(lines[at])
    path = folder / f"rewritten-{table}-{row}.jsonl"
    path.write_bytes(_rechecksum(lines))
    return path


def changed_state(sql: str) -> dict[str, list[tuple[object, ...]]]:
    """The live rows after ``sql``: what a failed restore must leave as it is."""
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(sql)
    return table_state(ALIAS)


def test_small_batches_restore_every_row_and_leave_no_thread(seeded, backup_env, settings):
    seeded(ALIAS)
    settings.ADCP_BACKUP_BATCH_SIZE = 7  # many batches per table, each sent while the next is built
    result = services.backup_create(database=ALIAS, compression="none")
    state = table_state(ALIAS)
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("UPDATE product SET name = 'changed' WHERE id <= 30")
        cursor.execute("DELETE FROM product_embeddings WHERE id > 5")

    services.backup_restore(file=result.name, database=ALIAS, safety_backup=False)

    assert table_state(ALIAS) == state
    assert sender_threads() == []


def test_a_batch_the_server_refuses_in_flight_fails_the_restore_and_changes_nothing(seeded, backup_env, settings):
    seeded(ALIAS)
    settings.ADCP_BACKUP_BATCH_SIZE = 1  # the refused row is in flight while the next tenant's row is built

    def second_publisher_1(line: bytes) -> bytes:  # a second tenant with the subdomain publisher-1
        return line.replace(b'"publisher-2"', b'"publisher-1"')

    broken = rewritten_backup(backup_env, "tenant", 2, second_publisher_1)
    state = changed_state("UPDATE tenant SET name = 'current' WHERE id = 3")

    with pytest.raises(RestoreError, match="(?i)duplicate"):
        services.backup_restore(file=str(broken), database=ALIAS, safety_backup=False)

    assert table_state(ALIAS) == state
    assert sender_threads() == []
    with connections[ALIAS].cursor() as cursor:  # the connection is in step with the server again
        cursor.execute("SELECT COUNT(*) FROM tenant")
        assert cursor.fetchone()[0] == len(state["tenant"])


def test_a_bad_row_found_while_a_batch_is_in_flight_changes_nothing(seeded, backup_env, settings):
    seeded(ALIAS)
    settings.ADCP_BACKUP_BATCH_SIZE = 5

    def no_name(line: bytes) -> bytes:  # name is NOT NULL: found by the checks while the batch before is on its way
        row = json.loads(line)
        row[2] = None
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()

    bad = rewritten_backup(backup_env, "product", 33, no_name)
    state = changed_state("UPDATE product SET name = 'current' WHERE id <= 60")

    with pytest.raises(InvalidBackup, match="name is NULL"):
        services.backup_restore(file=str(bad), database=ALIAS, safety_backup=False)

    assert table_state(ALIAS) == state
    assert sender_threads() == []


def test_datetimes_read_as_text_give_the_lines_datetime_objects_give(seeded, backup_env):
    seeded(ALIAS)
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("UPDATE product SET created_at = '2025-03-04 05:06:07' WHERE id = 1")
        cursor.execute("UPDATE product SET created_at = '2025-03-04 05:06:07.250000' WHERE id = 2")
        cursor.execute("UPDATE product SET created_at = '1999-12-31 23:59:59.000001' WHERE id = 3")
    result = services.backup_create(database=ALIAS, compression="none")
    lines = Path(result.path).read_bytes().split(b"\n")
    at = first_line(lines, "product")
    columns = [c["name"] for c in json.loads(lines[at])["columns"]]
    encode = row_encoder([c["family"] for c in json.loads(lines[at])["columns"]])
    with connections[ALIAS].cursor() as cursor:  # Django's own conversions: datetime objects
        cursor.execute(f"SELECT {', '.join(columns)} FROM product ORDER BY {dataset.table('product').primary_key}")
        rows = cursor.fetchall()
    assert isinstance(rows[0][columns.index("created_at")], datetime)
    written = lines[at + 1:at + 1 + len(rows)]
    assert written == [encode(list(row)) for row in rows]
    created = [json.loads(line)[columns.index("created_at")] for line in written[:3]]
    assert created == ["2025-03-04T05:06:07", "2025-03-04T05:06:07.250000", "1999-12-31T23:59:59.000001"]


def test_the_driver_is_the_one_the_run_asks_for():
    """CI runs MariaDB through PyMySQL on one Django version and through mysqlclient on the other."""
    wanted = os.environ.get("ADCP_TEST_MYSQL_DRIVER")
    if not wanted:
        pytest.skip("ADCP_TEST_MYSQL_DRIVER is not set")
    connection = connections[ALIAS]
    connection.ensure_connection()
    module = type(connection.connection).__module__.split(".")[0]
    assert module == {"pymysql": "pymysql", "mysqlclient": "MySQLdb"}[wanted]


TRICKY_TEXT = [
    'double "quotes" inside', "single 'quotes' inside", "a backslash \\ and \\' and \\\" and \\\\", "ends with \\",
    "x'); DROP TABLE tenant; -- ", "\\'); DELETE FROM tenant; -- ", "NUL \0 in the middle", "Ctrl-Z \x1a here",
    "CR \r LF \n tab \t", "%_ like wildcards", "'", "\\", '"', "𝄞 and é", "",
    "controls \x01\x1f, form feed \x0c, backspace \x08, DEL \x7f", "text \\u0001 and \\\\u001f and \\f",
    "\\\x01\\", "\u2028 separator, NUL last \0",
]


@pytest.mark.parametrize("backslash_escapes", [True, False], ids=["backslash-escapes", "no-backslash-escapes"])
def test_text_with_quotes_and_backslashes_restores_exactly(seeded, backup_env, backslash_escapes):
    seeded(ALIAS)
    with connections[ALIAS].cursor() as cursor:
        for number, text in enumerate(TRICKY_TEXT, start=1):
            cursor.execute("UPDATE product SET description = %s WHERE id = %s", [text, number])
    state = table_state(ALIAS)
    result = services.backup_create(database=ALIAS, compression="none")
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("UPDATE product SET description = 'changed'")
        if not backslash_escapes:
            cursor.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')")
    try:
        services.backup_restore(file=result.name, database=ALIAS, safety_backup=False)
    finally:
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')")

    assert table_state(ALIAS) == state
    assert [row[3] for row in state["product"][:len(TRICKY_TEXT)]] == TRICKY_TEXT


def test_floats_of_every_magnitude_restore_bit_for_bit(seeded, backup_env):
    """Plain decimals (what orjson writes between 1e-5 and 1e16) and exponents alike become the same DOUBLE."""
    seeded(ALIAS, demo.DemoSize(tenants=2, products=3000, agents=1, embeddings=2, dim=16))
    chance = random.Random(7)
    values = [0.1 + 0.2, 1e-300, -123456789.98765432, 5e-324, 1.7976931348623157e308, 1e16, 9007199254740993.0]
    while len(values) < 3000:
        if len(values) % 2:
            values.append(struct.unpack("<d", struct.pack("<Q", chance.getrandbits(64)))[0])
        else:
            values.append(chance.uniform(-1e6, 1e6) * 10.0 ** chance.randint(-5, 10))
    values = [v if math.isfinite(v) else 1.5 for v in values]
    with connections[ALIAS].cursor() as cursor:
        cursor.executemany("UPDATE product SET price_cpm = %s WHERE id = %s",
                           [(value, number) for number, value in enumerate(values, start=1)])
    state = table_state(ALIAS)
    result = services.backup_create(database=ALIAS, compression="none")
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("UPDATE product SET price_cpm = 0")

    services.backup_restore(file=result.name, database=ALIAS, safety_backup=False)

    restored = table_state(ALIAS)
    column = 4  # id, tenant_id, name, description, price_cpm
    assert [struct.pack("<d", row[column]) for row in restored["product"]] == \
        [struct.pack("<d", row[column]) for row in state["product"]]
    assert [row[column] for row in restored["product"]] == values
