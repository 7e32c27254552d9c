import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from locations.models import Location
from nodes.daemon import Daemon, DaemonError
from nodes.models import MB_PER_GB, Allocation, Node
from servers.models import Server

DEMO_NETWORKS = "127.0.0.0/8,::1/128"
LOCAL_NODE_PORT = 8080
SILENT_NODE_PORT = 8099


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
            "--daemon-port",
            type=int,
            default=LOCAL_NODE_PORT,
            help="port of the local node's daemon, when the node is first seeded",
        )
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=Path(settings.BASE_DIR) / ".demo",
            help="where the local daemon keeps its configuration and servers",
        )
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="migrate and seed, then exit without serving",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        passwords = self.seed(options["daemon_port"])
        url = f"http://{options['bind']}:{options['port']}/"
        self.stdout.write(self.style.SUCCESS("StellarPanel demo is ready."))
        self.stdout.write(f"  Panel:  {url}")
        self.stdout.write(f"  Admin:  admin / {passwords['admin']}")
        self.stdout.write(f"  Owner:  owner / {passwords['owner']}")
        server = Server.objects.filter(node__name="Local node").order_by("pk").first()
        if server is not None:
            self.stdout.write(
                f"  SFTP:   sftp -P {server.node.sftp_port} "
                f"{server.public_id}.{server.owner.email}@{server.node.host}"
                "  (the owner's password)"
            )
        if not options["no_serve"]:
            self.serve(options["bind"], options["port"], options["state_dir"])

    @transaction.atomic
    def seed(self, daemon_port: int) -> dict[str, str]:
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
        node = Node.objects.filter(name="Local node").first()
        if node is None:
            node = Node(
                name="Local node",
                location=west,
                host="127.0.0.1",
                port=daemon_port,
                protocol=Node.Protocol.HTTP,
                cpu_cores=4,
                memory_mb=8 * MB_PER_GB,
                disk_mb=50 * MB_PER_GB,
            )
            node.set_new_token()
            node.save()
        self.seed_servers(node, User.objects.get(username="owner"))
        if not Node.objects.filter(name="Silent node").exists():
            # Nothing listens here: the heartbeat shows how a dead node looks.
            silent = Node(
                name="Silent node",
                location=Location.objects.get(name="EU Central"),
                host="127.0.0.1",
                port=SILENT_NODE_PORT,
                protocol=Node.Protocol.HTTP,
                cpu_cores=2,
                memory_mb=4 * MB_PER_GB,
                disk_mb=20 * MB_PER_GB,
                sftp_port=2023,
            )
            silent.set_new_token()
            silent.save()
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

    def serve(self, bind: str, port: int, state_dir: Path) -> None:
        """Run the panel and the local node's daemon until Ctrl+C."""
        env = dict(os.environ)
        # The demo's nodes live on loopback, which the host policy refuses unless
        # it is listed; that listing is for the demo only.
        if not settings.DAEMON_ALLOWED_NETWORKS:
            env["DAEMON_ALLOWED_NETWORKS"] = DEMO_NETWORKS
            settings.DAEMON_ALLOWED_NETWORKS = [
                ipaddress.ip_network(n) for n in DEMO_NETWORKS.split(",")
            ]
        node = Node.objects.get(name="Local node")
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "--bind", bind, "--port", str(port)]
                + ["stellarpanel.asgi:application"],
                env=env,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "devdaemon", "--config"]
                + [str(self.write_daemon_config(node, port, state_dir))],
                env=env,
            ),
        ]
        self.stdout.write(
            "Serving the panel under Daphne, with a development daemon for "
            f"{node.name}; press Ctrl+C to stop."
        )
        # SIGTERM stops the demo as Ctrl+C does, children included.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            self.install_seeded_servers(node, processes)
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

    def write_daemon_config(self, node: Node, panel_port: int, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "local-node.toml"
        path.write_text(
            node.daemon_config(
                node.daemon_token(),
                listen="127.0.0.1",
                data_dir=str(folder / "local-node"),
                panel_url=f"http://127.0.0.1:{panel_port}",
            )
        )
        path.chmod(0o600)
        return path

    def install_seeded_servers(self, node: Node, processes: list) -> None:
        """Install the seeded servers once the daemon has taken them from the panel."""
        daemon = Daemon(node)
        waiting = set(
            node.servers.filter(status=Server.Status.INSTALLING).values_list(
                "public_id", flat=True
            )
        )
        deadline = time.monotonic() + 90
        while waiting and time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                return
            for public_id in sorted(waiting):
                try:
                    if daemon.server(public_id)["state"] == "install_failed":
                        daemon.install(public_id)
                        waiting.discard(public_id)
                except DaemonError:
                    pass  # not up yet, or not adopted yet
            time.sleep(1)
        if waiting:
            self.stderr.write(
                "The development daemon did not take the seeded servers in time; "
                "reinstall them from their pages."
            )
