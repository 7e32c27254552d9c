"""Triggers that keep every node within its limits and every allocation on its node.

They hold whatever writes the row (a view, Django admin, a shell, raw SQL):

- a server insert or update that would push the sum of CPU, memory or disk of its
  node's servers past the node's limits is refused; on PostgreSQL the trigger locks
  the node row first, so concurrent writes are summed one after the other (SQLite
  has one writer at a time);
- a node update that lowers a limit below what its servers use is refused;
- an allocation may be assigned only to a server on its own node, and a server
  with allocations cannot move to another node;
- an assigned allocation cannot be deleted; deleting a server frees its
  allocations.

Messages start with "stellar:" and name the rule, so the panel can turn them into
a sentence for the user.

"""

from django.db import migrations

from stellarpanel.migration_sql import per_vendor

# Node CPU is in cores, server CPU in percent of one core.
SQLITE = [
    """
    CREATE TRIGGER server_capacity_insert BEFORE INSERT ON servers_server
    BEGIN
        SELECT RAISE(ABORT, 'stellar: node capacity: cpu')
        WHERE (SELECT COALESCE(SUM(cpu), 0) FROM servers_server
               WHERE node_id = NEW.node_id) + NEW.cpu
            > (SELECT cpu_cores * 100 FROM nodes_node WHERE id = NEW.node_id);
        SELECT RAISE(ABORT, 'stellar: node capacity: memory')
        WHERE (SELECT COALESCE(SUM(memory_mb), 0) FROM servers_server
               WHERE node_id = NEW.node_id) + NEW.memory_mb
            > (SELECT memory_mb FROM nodes_node WHERE id = NEW.node_id);
        SELECT RAISE(ABORT, 'stellar: node capacity: disk')
        WHERE (SELECT COALESCE(SUM(disk_mb), 0) FROM servers_server
               WHERE node_id = NEW.node_id) + NEW.disk_mb
            > (SELECT disk_mb FROM nodes_node WHERE id = NEW.node_id);
    END
    """,
    """
    CREATE TRIGGER server_capacity_update BEFORE UPDATE OF node_id, cpu, memory_mb,
        disk_mb ON servers_server
    BEGIN
        SELECT RAISE(ABORT, 'stellar: node capacity: cpu')
        WHERE (SELECT COALESCE(SUM(cpu), 0) FROM servers_server
               WHERE node_id = NEW.node_id AND id != OLD.id) + NEW.cpu
            > (SELECT cpu_cores * 100 FROM nodes_node WHERE id = NEW.node_id);
        SELECT RAISE(ABORT, 'stellar: node capacity: memory')
        WHERE (SELECT COALESCE(SUM(memory_mb), 0) FROM servers_server
               WHERE node_id = NEW.node_id AND id != OLD.id) + NEW.memory_mb
            > (SELECT memory_mb FROM nodes_node WHERE id = NEW.node_id);
        SELECT RAISE(ABORT, 'stellar: node capacity: disk')
        WHERE (SELECT COALESCE(SUM(disk_mb), 0) FROM servers_server
               WHERE node_id = NEW.node_id AND id != OLD.id) + NEW.disk_mb
            > (SELECT disk_mb FROM nodes_node WHERE id = NEW.node_id);
        SELECT RAISE(ABORT, 'stellar: server allocations on another node')
        WHERE NEW.node_id != OLD.node_id AND EXISTS (
            SELECT 1 FROM nodes_allocation
            WHERE server_id = OLD.id AND node_id != NEW.node_id);
    END
    """,
    """
    CREATE TRIGGER node_limits_update BEFORE UPDATE OF cpu_cores, memory_mb, disk_mb
        ON nodes_node
    BEGIN
        SELECT RAISE(ABORT, 'stellar: node limits below use: cpu')
        WHERE (SELECT COALESCE(SUM(cpu), 0) FROM servers_server
               WHERE node_id = NEW.id) > NEW.cpu_cores * 100;
        SELECT RAISE(ABORT, 'stellar: node limits below use: memory')
        WHERE (SELECT COALESCE(SUM(memory_mb), 0) FROM servers_server
               WHERE node_id = NEW.id) > NEW.memory_mb;
        SELECT RAISE(ABORT, 'stellar: node limits below use: disk')
        WHERE (SELECT COALESCE(SUM(disk_mb), 0) FROM servers_server
               WHERE node_id = NEW.id) > NEW.disk_mb;
    END
    """,
    """
    CREATE TRIGGER allocation_server_node_insert BEFORE INSERT ON nodes_allocation
    WHEN NEW.server_id IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, 'stellar: allocation on another node')
        WHERE (SELECT node_id FROM servers_server WHERE id = NEW.server_id)
            != NEW.node_id;
    END
    """,
    """
    CREATE TRIGGER allocation_server_node_update BEFORE UPDATE OF server_id, node_id
        ON nodes_allocation
    WHEN NEW.server_id IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, 'stellar: allocation assigned')
        WHERE OLD.server_id IS NOT NULL AND OLD.server_id != NEW.server_id;
        SELECT RAISE(ABORT, 'stellar: allocation on another node')
        WHERE (SELECT node_id FROM servers_server WHERE id = NEW.server_id)
            != NEW.node_id;
    END
    """,
    """
    CREATE TRIGGER allocation_delete_guard BEFORE DELETE ON nodes_allocation
    WHEN OLD.server_id IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, 'stellar: allocation assigned');
    END
    """,
    """
    CREATE TRIGGER server_delete_frees BEFORE DELETE ON servers_server
    BEGIN
        UPDATE nodes_allocation SET server_id = NULL, is_primary = 0
        WHERE server_id = OLD.id;
    END
    """,
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "server_capacity_insert",
        "server_capacity_update",
        "node_limits_update",
        "allocation_server_node_insert",
        "allocation_server_node_update",
        "allocation_delete_guard",
        "server_delete_frees",
    )
]

POSTGRESQL = [
    """
    CREATE FUNCTION server_capacity() RETURNS trigger AS $$
    DECLARE
        node nodes_node%ROWTYPE;
        used_cpu bigint;
        used_memory bigint;
        used_disk bigint;
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.node_id = OLD.node_id AND NEW.cpu <= OLD.cpu
           AND NEW.memory_mb <= OLD.memory_mb AND NEW.disk_mb <= OLD.disk_mb THEN
            RETURN NEW;  -- shrinking in place cannot overfill a node
        END IF;
        -- Lock the node first: concurrent writers on this node wait here, and
        -- each sums what the ones before it committed.
        SELECT * INTO node FROM nodes_node WHERE id = NEW.node_id FOR UPDATE;
        SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory_mb), 0),
               COALESCE(SUM(disk_mb), 0)
          INTO used_cpu, used_memory, used_disk
          FROM servers_server
         WHERE node_id = NEW.node_id AND (TG_OP = 'INSERT' OR id <> OLD.id);
        IF used_cpu + NEW.cpu > node.cpu_cores * 100 THEN
            RAISE EXCEPTION 'stellar: node capacity: cpu'
                USING ERRCODE = 'check_violation';
        END IF;
        IF used_memory + NEW.memory_mb > node.memory_mb THEN
            RAISE EXCEPTION 'stellar: node capacity: memory'
                USING ERRCODE = 'check_violation';
        END IF;
        IF used_disk + NEW.disk_mb > node.disk_mb THEN
            RAISE EXCEPTION 'stellar: node capacity: disk'
                USING ERRCODE = 'check_violation';
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.node_id <> OLD.node_id AND EXISTS (
            SELECT 1 FROM nodes_allocation
             WHERE server_id = OLD.id AND node_id <> NEW.node_id) THEN
            RAISE EXCEPTION 'stellar: server allocations on another node'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER server_capacity BEFORE INSERT OR UPDATE OF node_id, cpu,
        memory_mb, disk_mb ON servers_server
    FOR EACH ROW EXECUTE FUNCTION server_capacity()
    """,
    """
    CREATE FUNCTION node_limits() RETURNS trigger AS $$
    DECLARE
        used_cpu bigint;
        used_memory bigint;
        used_disk bigint;
    BEGIN
        SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory_mb), 0),
               COALESCE(SUM(disk_mb), 0)
          INTO used_cpu, used_memory, used_disk
          FROM servers_server WHERE node_id = NEW.id;
        IF used_cpu > NEW.cpu_cores * 100 THEN
            RAISE EXCEPTION 'stellar: node limits below use: cpu'
                USING ERRCODE = 'check_violation';
        END IF;
        IF used_memory > NEW.memory_mb THEN
            RAISE EXCEPTION 'stellar: node limits below use: memory'
                USING ERRCODE = 'check_violation';
        END IF;
        IF used_disk > NEW.disk_mb THEN
            RAISE EXCEPTION 'stellar: node limits below use: disk'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER node_limits BEFORE UPDATE OF cpu_cores, memory_mb, disk_mb
        ON nodes_node
    FOR EACH ROW EXECUTE FUNCTION node_limits()
    """,
    """
    CREATE FUNCTION allocation_rules() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.server_id IS NOT NULL THEN
                RAISE EXCEPTION 'stellar: allocation assigned'
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN OLD;
        END IF;
        IF NEW.server_id IS NOT NULL THEN
            IF TG_OP = 'UPDATE' AND OLD.server_id IS NOT NULL
               AND OLD.server_id <> NEW.server_id THEN
                RAISE EXCEPTION 'stellar: allocation assigned'
                    USING ERRCODE = 'check_violation';
            END IF;
            -- FOR SHARE: a concurrent move of the server waits for this
            -- assignment, and then sees it.
            IF (SELECT node_id FROM servers_server WHERE id = NEW.server_id FOR SHARE)
               <> NEW.node_id THEN
                RAISE EXCEPTION 'stellar: allocation on another node'
                    USING ERRCODE = 'check_violation';
            END IF;
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER allocation_rules BEFORE INSERT OR UPDATE OF server_id, node_id
        OR DELETE ON nodes_allocation
    FOR EACH ROW EXECUTE FUNCTION allocation_rules()
    """,
    """
    CREATE FUNCTION server_delete_frees() RETURNS trigger AS $$
    BEGIN
        UPDATE nodes_allocation SET server_id = NULL, is_primary = false
         WHERE server_id = OLD.id;
        RETURN OLD;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER server_delete_frees BEFORE DELETE ON servers_server
    FOR EACH ROW EXECUTE FUNCTION server_delete_frees()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS server_capacity ON servers_server",
    "DROP FUNCTION IF EXISTS server_capacity()",
    "DROP TRIGGER IF EXISTS node_limits ON nodes_node",
    "DROP FUNCTION IF EXISTS node_limits()",
    "DROP TRIGGER IF EXISTS allocation_rules ON nodes_allocation",
    "DROP FUNCTION IF EXISTS allocation_rules()",
    "DROP TRIGGER IF EXISTS server_delete_frees ON servers_server",
    "DROP FUNCTION IF EXISTS server_delete_frees()",
]


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0003_delete_guards"),
        ("servers", "0001_initial"),
    ]

    operations = [
        per_vendor(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        ),
    ]
