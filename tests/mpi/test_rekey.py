"""An upgrade that changes the blocking rules: the keys filed under the old rules are
recomputed at start-up, so the identities filed before still meet the new ones."""

from __future__ import annotations

import httpx
import psycopg

from maillage.identity.blocking import DEFAULT_BLOCKING, blocking_keys
from maillage.mpi.rekey import ensure_blocking_keys, record_rules, stored_rules
from tests.factories import source_identity
from tests.mpi.support import create, territorial_of

OLD_RULES = ("birth_date", "name_year", "first_last", "ins")


def _file_under_old_rules(database_url: str, patient_id: str) -> list[str]:
    """Put one filed identity back as an earlier version left it: old keys, old rules."""
    with psycopg.connect(database_url) as conn:
        traits = conn.execute(
            "SELECT traits FROM mpi_source WHERE patient_id = %s", (patient_id,)
        ).fetchone()
        assert traits is not None
        old_keys = blocking_keys(traits[0], OLD_RULES)
        conn.execute(
            "UPDATE mpi_source SET blocking = %s WHERE patient_id = %s", (old_keys, patient_id)
        )
        record_rules(conn, OLD_RULES)
        return blocking_keys(traits[0], DEFAULT_BLOCKING)


def test_keys_filed_under_old_rules_are_recomputed_once(
    http: httpx.Client, clean_database: str
) -> None:
    first = create(http, source_identity(site=0, birth_name="Lefèvre", birth_date="1962-07-10"))
    new_keys = _file_under_old_rules(clean_database, first["id"])
    # no key of the new rules is one of the old: unrekeyed, it would meet nobody
    assert ensure_blocking_keys(clean_database) == 1
    with psycopg.connect(clean_database) as conn:
        assert stored_rules(conn) == DEFAULT_BLOCKING
        keys = conn.execute(
            "SELECT blocking FROM mpi_source WHERE patient_id = %s", (first["id"],)
        ).fetchone()
    assert keys is not None and sorted(keys[0]) == sorted(new_keys)
    assert ensure_blocking_keys(clean_database) == 0  # done: nothing on the next start
    # day and month swapped at the other site: met by the new rules' date key
    second = create(http, source_identity(site=1, birth_name="LEFEVRE", birth_date="1962-10-07"))
    assert territorial_of(second) == territorial_of(first)


def test_a_record_prepared_without_a_field_is_rekeyed(
    http: httpx.Client, clean_database: str
) -> None:
    """Traits stored by an older version may lack a field a new key reads: the rekey
    treats it as unknown instead of stopping the hub's start."""
    filed = create(http, source_identity(site=0, birth_name="Roux", birth_date="1970-03-04"))
    _file_under_old_rules(clean_database, filed["id"])
    with psycopg.connect(clean_database) as conn:
        conn.execute(
            "UPDATE mpi_source SET traits = traits - 'sex' WHERE patient_id = %s", (filed["id"],)
        )
    assert ensure_blocking_keys(clean_database) == 1
    with psycopg.connect(clean_database) as conn:
        keys = conn.execute(
            "SELECT blocking FROM mpi_source WHERE patient_id = %s", (filed["id"],)
        ).fetchone()
    assert keys is not None
    assert {"birth_date_sex:19700304|M", "birth_date_sex:19700304|F"} <= set(keys[0])
