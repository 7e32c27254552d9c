import pytest
from django.contrib.auth.models import User
from django.test import Client

from locations.models import Location
from nodes.models import Allocation, Node
from servers.models import Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def root_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "x"))
    return client


class TestDjangoAdmin:
    def test_it_registers_every_model(self) -> None:
        from django.contrib import admin

        for model in (Location, Node, Allocation, Server, User):
            assert admin.site.is_registered(model), model

    @pytest.mark.parametrize(
        "url",
        [
            "/django-admin/locations/location/?q=west&country=US",
            "/django-admin/nodes/node/?q=alpha&status__exact=offline",
            "/django-admin/nodes/allocation/?server__isempty=1",
            "/django-admin/servers/server/?q=x",
        ],
    )
    def test_it_lists_searches_and_filters(
        self, root_client: Client, node: Node, url: str
    ) -> None:
        assert root_client.get(url).status_code == 200

    def test_it_adds_a_node_with_fresh_credentials(self, root_client: Client) -> None:
        r = root_client.post(
            "/django-admin/nodes/node/add/",
            {
                "name": "raw",
                "host": "93.184.215.14",
                "port": "8080",
                "protocol": "HTTP",
                "cpu_cores": "2",
                "memory_mb": "2048",
                "disk_mb": "4096",
                "sftp_port": "2022",
                "upload_limit_mb": "100",
            },
        )
        assert r.status_code == 302
        node = Node.objects.get()
        assert len(node.token_id) == 16 and len(node.daemon_token()) == 43

    def test_it_applies_the_host_policy(self, root_client: Client) -> None:
        r = root_client.post(
            "/django-admin/nodes/node/add/",
            {"name": "meta", "host": "169.254.169.254", "port": "8080"},
        )
        assert r.status_code == 200
        assert "link-local" in r.content.decode()
        assert not Node.objects.exists()

    def test_it_is_closed_to_staff_without_permissions(
        self, admin_client: Client
    ) -> None:
        assert admin_client.get("/django-admin/nodes/node/").status_code == 403
