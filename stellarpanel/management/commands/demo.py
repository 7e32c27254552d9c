import os
import secrets
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from locations.models import Location
from nodes.models import MB_PER_GB, Allocation, Node
from servers.models import Server

DEMO_NETWORKS = "127.0.0.0/8,::1/128"


class Command(BaseCommand):
    help = (
        "Set up a demonstration panel on this machine: migrate, seed an admin, an "
        "owner, locations, a node with allocations and servers, then serve the "
        "panel under Daphne."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="address to serve on")
        parser.add_argument("--port", type=int, default=8000, help="port to serve on")
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="migrate and seed, then exit without serving",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        passwords = self.seed()
        url = f"http://{options['bind']}:{options['port']}/"
        self.stdout.write(self.style.SUCCESS("StellarPanel demo is ready."))
        self.stdout.write(f"  Panel:  {url}")
        self.stdout.write(f"  Admin:  admin / {passwords['admin']}")
        self.stdout.write(f"  Owner:  owner / {passwords['owner']}")
        if not options["no_serve"]:
            self.serve(options["bind"], options["port"])

    @transaction.atomic
    def seed(self) -> dict[str, str]:
        User = get_user_model()
        passwords = {}
        for username, staff in (("admin", True), ("owner", False)):
            user, _ = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            passwords[username] = secrets.token_urlsafe(12)
            user.set_password(passwords[username])
            user.is_staff = user.is_superuser = staff
            user.save()

        west, _ = Location.objects.get_or_create(
            name="US West",
            defaults={"country": "US", "city": "Los Angeles"},
        )
        Location.objects.get_or_create(
            name="EU Central",
            defaults={"country": "DE", "city": "Frankfurt"},
        )
        node = Node.objects.filter(host="127.0.0.1", port=8080).first()
        if node is None:
            node = Node(
                name="Local node",
                location=west,
                host="127.0.0.1",
                port=8080,
                protocol=Node.Protocol.HTTP,
                cpu_cores=4,
                memory_mb=8 * MB_PER_GB,
                disk_mb=50 * MB_PER_GB,
            )
            node.set_new_token()
            node.save()
        self.seed_servers(node, User.objects.get(username="owner"))
        return passwords

    def seed_servers(self, node: Node, owner) -> None:
        Allocation.objects.bulk_create(
            [
                Allocation(node=node, ip="127.0.0.1", port=port)
                for port in range(25565, 25575)
            ],
            ignore_conflicts=True,
        )
        if node.servers.exists():
            return
        for name, port, cpu, memory_mb in (
            ("Survival", 25565, 200, 2048),
            ("Creative", 25566, 100, 1024),
        ):
            server = Server.objects.create(
                name=name,
                owner=owner,
                node=node,
                cpu=cpu,
                memory_mb=memory_mb,
                disk_mb=5120,
            )
            Allocation.objects.filter(node=node, port=port).update(
                server=server, is_primary=True
            )

    def serve(self, bind: str, port: int) -> None:
        env = dict(os.environ)
        # The demo's node lives on loopback, which the host policy refuses unless
        # it is listed; that listing is for the demo only.
        if not settings.DAEMON_ALLOWED_NETWORKS:
            env["DAEMON_ALLOWED_NETWORKS"] = DEMO_NETWORKS
        command = [
            sys.executable,
            "-m",
            "daphne",
            "--bind",
            bind,
            "--port",
            str(port),
            "stellarpanel.asgi:application",
        ]
        self.stdout.write("Serving under Daphne; press Ctrl+C to stop.")
        panel = subprocess.Popen(command, env=env)
        try:
            panel.wait()
        except KeyboardInterrupt:
            panel.terminate()
            panel.wait(timeout=10)
