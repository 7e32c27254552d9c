import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection

from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server
from tests.conftest import make_node, make_user


@pytest.mark.django_db(transaction=True)
class TestFlush:
    def test_it_empties_tables_that_the_delete_guards_protect(self) -> None:
        location = Location.objects.create(name="US West")
        node = make_node(location=location)
        server = Server.objects.create(
            name="s", owner=make_user("bob"), node=node, cpu=1, memory_mb=1, disk_mb=1
        )
        Allocation.objects.create(node=node, ip="203.0.113.10", port=25565)
        Allocation.objects.filter(node=node).update(server=server)

        call_command("flush", interactive=False, verbosity=0)

        assert not Location.objects.exists() and not Node.objects.exists()
        # The guards are back afterwards.
        location = Location.objects.create(name="EU Central")
        make_node(location=location)
        with (
            pytest.raises(IntegrityError, match="stellar: location has nodes"),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM locations_location")


@pytest.mark.django_db
class TestTriggersAfterMigrations:
    def test_it_keeps_every_trigger_through_table_rebuilds(self) -> None:
        # Later migrations rebuild servers_server on SQLite; every rule must
        # still be there at the end.
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            else:
                cursor.execute(
                    "SELECT DISTINCT trigger_name FROM information_schema.triggers"
                )
            names = {row[0] for row in cursor.fetchall()}
        expected = {"node_delete_guard", "location_delete_guard", "server_delete_frees"}
        if connection.vendor == "sqlite":
            expected |= {
                "server_capacity_insert",
                "server_capacity_update",
                "node_limits_update",
                "allocation_server_node_insert",
                "allocation_server_node_update",
                "allocation_delete_guard",
            }
        else:
            expected |= {"server_capacity", "node_limits", "allocation_rules"}
        assert names == expected
