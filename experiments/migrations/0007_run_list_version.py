"""A change counter for the run list, kept by the database itself.

The API serves pages of the run list from a cache keyed by this counter
(``experiments.services.run_list``). Triggers add one to it in the same transaction as
any change to what a list row shows: a run inserted, deleted or changed in a listed
column, an experiment renamed or moved to another team, a user renamed. So a reader that
sees the new count also sees the new rows, whichever code path (ORM save, bulk update,
raw SQL, cascade) made the change.

The table has no Django model on purpose: test databases are reset by truncating the
models' tables, and a counter that never goes back cannot hand a reset database a page
cached from its former contents.
"""

from django.db import migrations

TABLE = "scep_run_list_version"

#: The run columns a list row shows (experiments.api.serializers.RunSerializer.COLUMNS).
RUN_COLUMNS = (
    "experiment_id, experiment_version, status, status_reason, verdict, verdict_confidence, "
    "dry_run, started_by_id, approved_by_id, approved_at, created_at, finished_at"
)

#: (trigger name, table, event) — the same events on both databases.
TRIGGERS = (
    ("scep_rlv_run_insert", "experiments_run", "INSERT"),
    ("scep_rlv_run_delete", "experiments_run", "DELETE"),
    ("scep_rlv_run_update", "experiments_run", f"UPDATE OF {RUN_COLUMNS}"),
    ("scep_rlv_experiment_update", "experiments_experiment", "UPDATE OF name, team_id"),
    ("scep_rlv_user_update", "auth_user", "UPDATE OF username"),
)

TRUNCATED = (
    ("scep_rlv_run", "experiments_run"),
    ("scep_rlv_experiment", "experiments_experiment"),
    ("scep_rlv_user", "auth_user"),
)

BUMP = f"UPDATE {TABLE} SET version = version + 1 WHERE id = 1"


def _postgresql() -> tuple[list[str], list[str]]:
    forward = [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY, version bigint NOT NULL)",
        f"INSERT INTO {TABLE} (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        "CREATE OR REPLACE FUNCTION scep_run_list_bump() RETURNS trigger AS $$ "
        f"BEGIN {BUMP}; RETURN NULL; END; $$ LANGUAGE plpgsql",
    ]
    # Statement triggers: one bump per statement, however many rows it touched.
    forward += [
        f"CREATE TRIGGER {name} AFTER {event} ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION scep_run_list_bump()"
        for name, table, event in TRIGGERS
    ]
    # TRUNCATE fires no delete trigger (and is how test databases are reset).
    forward += [
        f"CREATE TRIGGER {name}_truncate AFTER TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION scep_run_list_bump()"
        for name, table in TRUNCATED
    ]
    backward = [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, _ in TRIGGERS]
    backward += [f"DROP TRIGGER IF EXISTS {name}_truncate ON {table}" for name, table in TRUNCATED]
    backward += ["DROP FUNCTION IF EXISTS scep_run_list_bump()", f"DROP TABLE IF EXISTS {TABLE}"]
    return forward, backward


def _sqlite() -> tuple[list[str], list[str]]:
    forward = [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY, version bigint NOT NULL)",
        f"INSERT OR IGNORE INTO {TABLE} (id, version) VALUES (1, 0)",
    ]
    # SQLite has row triggers only: a bulk change bumps once per row, which is harmless.
    forward += [
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} "
        f"FOR EACH ROW BEGIN {BUMP}; END"
        for name, table, event in TRIGGERS
    ]
    backward = [f"DROP TRIGGER IF EXISTS {name}" for name, _, _ in TRIGGERS]
    backward += [f"DROP TABLE IF EXISTS {TABLE}"]
    return forward, backward


def _statements(vendor: str, direction: int) -> list[str]:
    if vendor == "postgresql":
        return _postgresql()[direction]
    if vendor == "sqlite":
        return _sqlite()[direction]
    return []  # other databases: no counter, the API lists runs uncached


def forward(apps, schema_editor) -> None:
    for statement in _statements(schema_editor.connection.vendor, 0):
        schema_editor.execute(statement, None)


def backward(apps, schema_editor) -> None:
    for statement in _statements(schema_editor.connection.vendor, 1):
        schema_editor.execute(statement, None)


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0006_run_analysis_handoff"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
