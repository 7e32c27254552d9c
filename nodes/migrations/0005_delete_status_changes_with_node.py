"""A node's status history goes with it, whatever deletes the node.

The node delete guard already removes a node's free allocations; it now removes its
status changes too, so a raw DELETE of a node without servers succeeds.
"""

from django.db import migrations

from stellarpanel.migration_sql import per_vendor

GUARD = "stellar: node has servers or assigned allocations"

STATUS_CHANGES = "DELETE FROM nodes_nodestatuschange WHERE node_id = OLD.id;"


def _sqlite(also: str) -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS node_delete_guard",
        f"""
        CREATE TRIGGER node_delete_guard BEFORE DELETE ON nodes_node
        BEGIN
            SELECT RAISE(ABORT, '{GUARD}')
            WHERE EXISTS (SELECT 1 FROM servers_server WHERE node_id = OLD.id)
               OR EXISTS (SELECT 1 FROM nodes_allocation
                          WHERE node_id = OLD.id AND server_id IS NOT NULL);
            DELETE FROM nodes_allocation WHERE node_id = OLD.id;
            {also}
        END
        """,
    ]


def _postgresql(also: str) -> list[str]:
    return [
        f"""
        CREATE OR REPLACE FUNCTION node_delete_guard() RETURNS trigger AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM servers_server WHERE node_id = OLD.id)
               OR EXISTS (SELECT 1 FROM nodes_allocation
                          WHERE node_id = OLD.id AND server_id IS NOT NULL) THEN
                RAISE EXCEPTION '{GUARD}' USING ERRCODE = 'restrict_violation';
            END IF;
            DELETE FROM nodes_allocation WHERE node_id = OLD.id;
            {also}
            RETURN OLD;
        END;
        $$ LANGUAGE plpgsql
        """
    ]


class Migration(migrations.Migration):
    dependencies = [("nodes", "0004_heartbeat")]

    operations = [
        per_vendor(
            {
                "sqlite": _sqlite(STATUS_CHANGES),
                "postgresql": _postgresql(STATUS_CHANGES),
            },
            {"sqlite": _sqlite(""), "postgresql": _postgresql("")},
        ),
    ]
