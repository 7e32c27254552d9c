import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server

pytestmark = pytest.mark.django_db


def run_demo() -> dict[str, str]:
    out = io.StringIO()
    call_command("demo", no_serve=True, stdout=out)
    return dict(
        re.findall(r"^\s+(?:Admin|Owner):\s+(\w+) / (\S+)$", out.getvalue(), re.M)
    )


class TestDemo:
    def test_it_seeds_logins_that_work(self) -> None:
        logins = run_demo()
        admin = authenticate(username="admin", password=logins["admin"])
        owner = authenticate(username="owner", password=logins["owner"])
        assert admin is not None and admin.is_staff
        assert owner is not None and not owner.is_staff

    def test_it_seeds_locations_and_a_node(self) -> None:
        run_demo()
        assert set(Location.objects.values_list("name", flat=True)) == {
            "US West",
            "EU Central",
        }
        node = Node.objects.get(name="Local node")
        assert Node.objects.get(name="Silent node").location.name == "EU Central"
        assert node.location.place == "Los Angeles, US"
        assert len(node.daemon_token()) == 43
        # The owner has servers, each at an allocation of the node.
        servers = Server.objects.filter(owner__username="owner", node=node)
        assert servers.count() == 2
        assert all(s.primary_allocation is not None for s in servers)
        assert node.allocations.count() == 10

    def test_it_can_run_again(self) -> None:
        first = run_demo()
        second = run_demo()
        assert Node.objects.count() == 2 and Location.objects.count() == 2
        assert Server.objects.count() == 2 and Allocation.objects.count() == 10
        # Each run prints fresh passwords, and only those work.
        assert first["admin"] != second["admin"]
        assert authenticate(username="admin", password=second["admin"]) is not None
        assert authenticate(username="admin", password=first["admin"]) is None

    def test_it_prints_an_sftp_line_for_the_owners_first_server(self) -> None:
        out = io.StringIO()
        call_command("demo", no_serve=True, stdout=out)
        survival = Server.objects.get(name="Survival")
        assert (
            f"  SFTP:   sftp -P 2022 {survival.public_id}.owner@example.com@127.0.0.1"
            in out.getvalue()
        )
