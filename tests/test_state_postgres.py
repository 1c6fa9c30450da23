"""The postgres backend on a real PostgreSQL server: the conformance suite, plus what only a
database shows (migrations, history, advisory-lock keys, masked connection strings, errors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness.backends import PG_DSN, postgres_schema

from reconciler.state import BackendError, State, StateConflict, StateLocked
from reconciler.state.conformance import StateStoreConformance, sample_state
from reconciler.state.dsn import mask_dsn
from reconciler.state.postgres import HISTORY_KEPT, PostgresStateStore


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as name:
        yield name


class TestPostgresStateStore(StateStoreConformance):
    @pytest.fixture
    def store_factory(self, schema: str) -> Iterator[Callable[[], PostgresStateStore]]:
        handles: list[PostgresStateStore] = []

        def factory() -> PostgresStateStore:
            handles.append(PostgresStateStore(PG_DSN, schema, "acme-prod"))
            return handles[-1]

        yield factory
        for handle in handles:
            handle.close()

    @pytest.fixture
    def store_source(self, schema: str) -> str:
        return f"from reconciler.state.postgres import PostgresStateStore\nstore = PostgresStateStore({PG_DSN!r}, {schema!r}, 'acme-prod')"


def test_states_of_other_names_and_schemas_are_independent(schema: str) -> None:
    with postgres_schema() as other_schema:
        stores = [PostgresStateStore(PG_DSN, schema, "a"), PostgresStateStore(PG_DSN, schema, "b"),
                  PostgresStateStore(PG_DSN, other_schema, "a")]
        try:
            infos = [store.lock("apply") for store in stores]  # one lock per (schema, name)
            stores[0].write(sample_state())
            stores[0].append({"type": "begin"})
            assert stores[1].read() == State() and stores[2].read() == State() and stores[1].replay() == []
            with pytest.raises(StateLocked):
                PostgresStateStore(PG_DSN, schema, "a").lock("apply")
            for store, info in zip(stores, infos, strict=True):
                store.unlock(info.id)
        finally:
            for store in stores:
                store.close()


def test_the_last_twenty_states_are_kept_in_history(schema: str) -> None:
    store = PostgresStateStore(PG_DSN, schema, "acme")
    try:
        for serial in range(1, HISTORY_KEPT + 5):
            store.write(State("lineage-1", serial))
        history = store.history()
        assert len(history) == HISTORY_KEPT
        assert [serial for _, _, serial in history] == list(range(HISTORY_KEPT + 3, 3, -1))
        assert store.read().serial == HISTORY_KEPT + 4
    finally:
        store.close()


def test_migrations_run_once_and_are_idempotent(schema: str) -> None:
    first, second = PostgresStateStore(PG_DSN, schema, "x"), PostgresStateStore(PG_DSN, schema, "x")
    try:
        first.write(sample_state())
        assert second.read() == sample_state()  # a second connection migrates nothing twice
        row = second._db().execute(f"SELECT count(*), max(version) FROM {schema}.schema_version").fetchone()
        assert row == (1, 1)
    finally:
        first.close()
        second.close()


def test_a_write_after_force_unlock_cannot_overwrite(schema: str) -> None:
    """The broken lock's holder lost its session: it can write nothing, and had it a new
    session, the compare-and-swap would still refuse its stale write."""
    holder, rescuer = PostgresStateStore(PG_DSN, schema, "x"), PostgresStateStore(PG_DSN, schema, "x")
    try:
        info = holder.lock("apply")
        holder.read()
        assert holder.holds_lock()
        rescuer.force_unlock(info.id)
        assert not holder.holds_lock()  # a leader learns it lost the lock
        rescuer.unlock(rescuer.lock("apply").id)
        rescuer.write(sample_state())
        with pytest.raises(BackendError, match="connection holding the state lock was lost"):
            holder.append({"type": "intent"})
        with pytest.raises(StateConflict):  # a new session of the old holder: its write is stale
            holder.write(State("other", 1))
        assert holder.replay() == []
        holder.unlock(info.id)  # nothing left to release, and nothing to hide the first error behind
        assert PostgresStateStore(PG_DSN, schema, "x").read() == sample_state()
    finally:
        holder.close()
        rescuer.close()


@pytest.mark.parametrize("given, shown", [
    ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ("postgres://u:s%40cr3t@h:5432/db?sslmode=require", "postgres://u:***@h:5432/db?sslmode=require"),
    ("postgresql://u@h/db?password=secret&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ("host=h user=u password=secret dbname=db", "host=h user=u password=*** dbname=db"),
    ("host=h password='se cret' dbname=db", "host=h password=*** dbname=db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_connection_strings_are_shown_without_passwords(given: str, shown: str) -> None:
    assert mask_dsn(given) == shown


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    store = PostgresStateStore("postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2", "s", "x")
    with pytest.raises(BackendError) as caught:
        store.read()
    message = str(caught.value)
    assert "hunter2" not in message and "postgresql://u:***@127.0.0.1:1/db" in message
    assert message.startswith("postgres state backend") and "connecting failed" in message and "Fix:" in message


def test_a_missing_database_is_one_clear_error() -> None:
    dsn = PG_DSN.rsplit("/", 1)[0] + "/no_such_database_for_reconciler"
    with pytest.raises(BackendError, match=r"^postgres state backend .*no_such_database_for_reconciler.*connecting failed: .*"
                                           r"does not exist\. Fix: create the database"):
        PostgresStateStore(dsn, "s", "x").read()


def test_a_user_without_create_rights_can_use_an_existing_schema(schema: str) -> None:
    """Plan-only jobs may connect as a user that can read and write reconciler's tables but not
    create schemas: an up-to-date schema is not created again."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    owner = PostgresStateStore(PG_DSN, schema, "x")
    owner.write(sample_state())
    owner.close()
    role = f"ro_{schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
            limited = PostgresStateStore(make_conninfo(PG_DSN, user=role), schema, "x")
            assert limited.read() == sample_state()
            limited.close()
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_a_refused_password_is_explained_with_its_fix() -> None:
    """The test server trusts local connections, so libpq's refusal is built here as psycopg
    reports it."""
    import psycopg

    store = PostgresStateStore("postgresql://u:hunter2@db.internal/db", "s", "x")
    refusal = psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "u"')
    message = store._explain("connecting", refusal)
    assert message.startswith("postgres state backend postgresql://u:***@db.internal/db (schema s, state x): connecting failed")
    assert "Fix: set the password in RECONCILER_PG_CONN_STR, PGPASSWORD or ~/.pgpass" in message and "hunter2" not in message
