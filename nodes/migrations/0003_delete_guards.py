"""Triggers that keep nodes and locations from being deleted while in use.

They hold whatever deletes the row (a view, Django admin, a shell, raw SQL): a node
with servers or assigned allocations stays, and its free allocations go with it; a
location with nodes stays. The messages start with "stellar:" so the panel can tell
them from other integrity errors.

"""

from django.db import migrations

from stellarpanel.migration_sql import per_vendor

SQLITE = [
    """
    CREATE TRIGGER node_delete_guard BEFORE DELETE ON nodes_node
    BEGIN
        SELECT RAISE(ABORT, 'stellar: node has servers or assigned allocations')
        WHERE EXISTS (SELECT 1 FROM servers_server WHERE node_id = OLD.id)
           OR EXISTS (SELECT 1 FROM nodes_allocation
                      WHERE node_id = OLD.id AND server_id IS NOT NULL);
        DELETE FROM nodes_allocation WHERE node_id = OLD.id;
    END
    """,
    """
    CREATE TRIGGER location_delete_guard BEFORE DELETE ON locations_location
    BEGIN
        SELECT RAISE(ABORT, 'stellar: location has nodes')
        WHERE EXISTS (SELECT 1 FROM nodes_node WHERE location_id = OLD.id);
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS node_delete_guard",
    "DROP TRIGGER IF EXISTS location_delete_guard",
]

POSTGRESQL = [
    """
    CREATE FUNCTION node_delete_guard() RETURNS trigger AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM servers_server WHERE node_id = OLD.id)
           OR EXISTS (SELECT 1 FROM nodes_allocation
                      WHERE node_id = OLD.id AND server_id IS NOT NULL) THEN
            RAISE EXCEPTION 'stellar: node has servers or assigned allocations'
                USING ERRCODE = 'restrict_violation';
        END IF;
        DELETE FROM nodes_allocation WHERE node_id = OLD.id;
        RETURN OLD;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER node_delete_guard BEFORE DELETE ON nodes_node
    FOR EACH ROW EXECUTE FUNCTION node_delete_guard()
    """,
    """
    CREATE FUNCTION location_delete_guard() RETURNS trigger AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM nodes_node WHERE location_id = OLD.id) THEN
            RAISE EXCEPTION 'stellar: location has nodes'
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER location_delete_guard BEFORE DELETE ON locations_location
    FOR EACH ROW EXECUTE FUNCTION location_delete_guard()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS node_delete_guard ON nodes_node",
    "DROP FUNCTION IF EXISTS node_delete_guard()",
    "DROP TRIGGER IF EXISTS location_delete_guard ON locations_location",
    "DROP FUNCTION IF EXISTS location_delete_guard()",
]


class Migration(migrations.Migration):
    dependencies = [
        ("locations", "0001_initial"),
        ("nodes", "0002_initial"),
        ("servers", "0001_initial"),
    ]

    operations = [
        per_vendor(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        ),
    ]
