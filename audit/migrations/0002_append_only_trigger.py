"""Append-only enforced by PostgreSQL itself, not only by ``AuditEntry.save``.

Row triggers refuse UPDATE and DELETE of ``audit_auditentry``, and a statement trigger
refuses TRUNCATE, so neither a raw SQL statement nor a bulk ``QuerySet.update`` can
rewrite the trail. Two narrow exceptions:

- deleting a user sets ``actor_id`` to NULL (the FK's ON DELETE SET NULL, done by
  Django as an UPDATE): allowed when nothing but ``actor_id`` changes, to NULL;
  ``actor_name`` keeps who it was.
- TRUNCATE when the session has set ``scep.audit_truncate_ok = 'on'``: the test suite
  does this to reset its throw-away database between tests (``tests/conftest.py``).

SQLite has no such guarantees to offer; there the Python guard is all there is.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION scep_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF coalesce(current_setting('scep.audit_truncate_ok', true), '') = 'on' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'audit entries are append-only: TRUNCATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;  -- ON DELETE SET NULL of the actor's user row
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: % of entry % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER scep_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION scep_audit_append_only();
CREATE TRIGGER scep_audit_no_truncate
    BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION scep_audit_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS scep_audit_no_truncate ON audit_auditentry;
DROP TRIGGER IF EXISTS scep_audit_no_update_delete ON audit_auditentry;
DROP FUNCTION IF EXISTS scep_audit_append_only();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, None)  # None: the % in the SQL are not placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD), elidable=False),
    ]
