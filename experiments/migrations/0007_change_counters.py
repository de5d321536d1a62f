"""Change counters kept by the database itself, for caches that can never be stale.

Two counters, in table ``scep_change_counter``:

- ``runs`` moves with any change to what a run-list row shows: a run inserted, deleted or
  changed in a listed column, an experiment renamed or moved to another team, a user
  renamed. The API serves run-list pages from a cache keyed by it
  (``experiments.services.run_list``).
- ``principals`` moves with any change to who may call the API as what: tokens, users,
  their role groups, teams and team memberships. The API keeps a token's user and roles
  under it (``scep.authentication``).

Triggers move a counter in the same transaction as the change (on PostgreSQL at its
commit), so a reader that sees the new count also sees the new rows, whichever code path
(ORM save, bulk update, raw SQL, cascade, TRUNCATE) made the change.

The table has no Django model on purpose: test databases are reset by truncating the
models' tables, and a counter that never goes back cannot hand a reset database an
entry cached from its former contents.
"""

from django.db import migrations

TABLE = "scep_change_counter"
COUNTERS = ("runs", "principals")

#: The run columns a list row shows (experiments.api.serializers.RunSerializer.COLUMNS).
RUN_COLUMNS = (
    "experiment_id, experiment_version, status, status_reason, verdict, verdict_confidence, "
    "dry_run, started_by_id, approved_by_id, approved_at, created_at, finished_at"
)
ANY = "INSERT OR UPDATE OR DELETE"

#: (counter, table, events) — row changes, the same on both databases.
WATCHED = (
    ("runs", "experiments_run", "INSERT OR DELETE"),
    ("runs", "experiments_run", f"UPDATE OF {RUN_COLUMNS}"),
    ("runs", "experiments_experiment", "UPDATE OF name, team_id"),
    ("runs", "auth_user", "UPDATE OF username"),
    ("principals", "authtoken_token", ANY),
    ("principals", "auth_user", ANY),
    ("principals", "auth_user_groups", ANY),
    ("principals", "auth_group", ANY),
    ("principals", "governance_team", ANY),
    ("principals", "governance_teammembership", ANY),
)


def _bump(counter: str) -> str:
    return f"UPDATE {TABLE} SET version = version + 1 WHERE name = '{counter}'"


def _create_table(upsert: str) -> list[str]:
    rows = ", ".join(f"('{name}', 0)" for name in COUNTERS)
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} "
        "(name varchar(32) PRIMARY KEY, version bigint NOT NULL)",
        upsert.format(table=TABLE, rows=rows),
    ]


def _postgresql() -> tuple[list[str], list[str]]:
    forward = _create_table(
        "INSERT INTO {table} (name, version) VALUES {rows} ON CONFLICT DO NOTHING"
    )
    forward.append(
        "CREATE OR REPLACE FUNCTION scep_change_counter_bump() RETURNS trigger AS $$ BEGIN "
        f"UPDATE {TABLE} SET version = version + 1 WHERE name = TG_ARGV[0]; "
        "RETURN NULL; END; $$ LANGUAGE plpgsql"
    )
    triggers = []
    for i, (counter, table, events) in enumerate(WATCHED):
        # Deferred to the commit: a transaction takes the counter's row lock as its last
        # act, so it never holds that lock while waiting for another (runs are changed by
        # many concurrent transactions; an immediate trigger could deadlock two of them).
        triggers.append((f"scep_cc_{i}", table, events))
        forward.append(
            f"CREATE CONSTRAINT TRIGGER scep_cc_{i} AFTER {events} ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"EXECUTE FUNCTION scep_change_counter_bump('{counter}')"
        )
    # TRUNCATE fires no row trigger (and is how test databases are reset).
    truncated = sorted({(counter, table) for counter, table, _ in WATCHED})
    for i, (counter, table) in enumerate(truncated):
        triggers.append((f"scep_cc_truncate_{i}", table, "TRUNCATE"))
        forward.append(
            f"CREATE TRIGGER scep_cc_truncate_{i} AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION scep_change_counter_bump('{counter}')"
        )
    backward = [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, _ in triggers]
    backward += [
        "DROP FUNCTION IF EXISTS scep_change_counter_bump()",
        f"DROP TABLE IF EXISTS {TABLE}",
    ]
    return forward, backward


def _sqlite() -> tuple[list[str], list[str]]:
    forward = _create_table("INSERT OR IGNORE INTO {table} (name, version) VALUES {rows}")
    names = []
    # SQLite has row triggers only, one event each: a bulk change bumps once per row,
    # which is harmless.
    for i, (counter, table, events) in enumerate(WATCHED):
        for j, event in enumerate(events.split(" OR ")):
            name = f"scep_cc_{i}_{j}"
            names.append(name)
            forward.append(
                f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} "
                f"FOR EACH ROW BEGIN {_bump(counter)}; END"
            )
    backward = [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    backward += [f"DROP TABLE IF EXISTS {TABLE}"]
    return forward, backward


def _statements(vendor: str, direction: int) -> list[str]:
    if vendor == "postgresql":
        return _postgresql()[direction]
    if vendor == "sqlite":
        return _sqlite()[direction]
    return []  # other databases: no counters, nothing is cached


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
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("governance", "0002_teams"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
