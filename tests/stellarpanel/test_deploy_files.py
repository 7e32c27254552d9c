"""The Dockerfile, its entrypoint and health check, docker-compose.yml and the
ignore files hold together."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.conftest import ROOT
from tests.stellarpanel import test_asgi
from tests.stellarpanel.test_asgi import free_port

SERVICES = {"postgres", "redis", "panel", "heartbeat", "daemon"}
# Settings the panel reads that Compose passes on from .env, with their defaults.
PASSED_ON = {
    "PANEL_URL": "http://panel:8000",
    "ALLOWED_HOSTS": "localhost,127.0.0.1",
    "TRUST_X_FORWARDED_PROTO": "False",
    "SECURE_HSTS_PRELOAD": "False",
    "DAEMON_ALLOWED_NETWORKS": "172.29.0.0/24",
    "DAEMON_CA_BUNDLE": "",
    "HEARTBEAT_ENABLED": "True",
    "LOG_LEVEL": "INFO",
    "TIME_ZONE": "UTC",
}

# The panel under Daphne on a fresh database, as the ASGI smoke test starts it.
daphne_url = test_asgi.daphne_url
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test-password"}


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_clients() -> list[list[str]]:
    """The compose commands on this machine that work: v1 and the v2 plugin."""
    clients = []
    if shutil.which("docker-compose"):
        clients.append(["docker-compose"])
    if shutil.which("docker"):
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30
        )
        if plugin.returncode == 0:
            clients.append(["docker", "compose"])
    return clients


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """Run docker/healthcheck.py as the container does, against 127.0.0.1:`port`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PANEL_URL", "PORT")}
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
        env=env | {"PORT": str(port), "PANEL_URL": "http://127.0.0.1:8000"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


class TestDeployFiles:
    def test_it_builds_on_python_313_slim_with_uv_as_a_user(self) -> None:
        steps = dockerfile()
        commands = [args for name, args in steps if name == "RUN"]

        # The base, uv, the locked dependencies without dev tools.
        assert steps[0] == ("FROM", "python:3.13-slim")
        assert any("pip install" in c and "uv" in c for c in commands)
        assert any("uv sync --frozen --no-dev" in c for c in commands)
        # What uv sync reads is copied before it runs.
        copies = [args for name, args in steps if name == "COPY"]
        assert "uv.lock" in copies[0] and "pyproject.toml" in copies[0]
        for name in copies[0].split()[:-1]:
            assert (ROOT / name).is_file(), name

        # It runs as a user of its own, through the entrypoint, serving on 8000.
        users = [args for name, args in steps if name == "USER"]
        assert users and users[-1] not in ("root", "0")
        assert ("ENTRYPOINT", '["/app/docker/entrypoint.sh"]') in steps
        assert ("EXPOSE", "8000") in steps

    def test_it_leaves_secrets_and_local_state_out_of_the_image(self) -> None:
        lines = (ROOT / ".dockerignore").read_text().splitlines()
        ignored = [line for line in lines if line and not line.startswith("#")]
        for name in (".git", ".venv", ".env", "db.sqlite3*", "secrets", "node.toml"):
            assert name in ignored
        # What the image needs is not ignored.
        for name in ("pyproject.toml", "uv.lock", ".python-version", "docker"):
            assert name not in ignored

    def test_it_keeps_secrets_and_the_node_token_out_of_git(self) -> None:
        def ignored(path: str) -> bool:
            check = subprocess.run(
                ["git", "check-ignore", "--quiet", "--no-index", path],
                cwd=ROOT,
                capture_output=True,
                timeout=30,
            )
            assert check.returncode in (0, 1), check.stderr
            return check.returncode == 0

        # What the Compose quick start writes beside docker-compose.yml.
        for path in ("secrets/secret_key", "secrets/encryption_key", "node.toml"):
            assert ignored(path), path
        assert ignored(".env")
        # What belongs in the repository is not ignored.
        for path in (".env.example", "docker-compose.yml", "docs/PROTOCOL.md"):
            assert not ignored(path), path

    def test_it_migrates_before_it_serves(self) -> None:
        entrypoint = ROOT / "docker" / "entrypoint.sh"
        assert os.access(entrypoint, os.X_OK)
        syntax = subprocess.run(["sh", "-n", str(entrypoint)], capture_output=True)
        assert syntax.returncode == 0, syntax.stderr

        text = entrypoint.read_text()
        assert text.index("manage.py migrate --no-input") < text.index("exec daphne")
        assert "stellarpanel.asgi:application" in text
        assert "exec python -m devdaemon" in text
        assert "exec python manage.py heartbeat" in text

    def test_it_composes_the_services(self) -> None:
        services = compose()["services"]
        assert set(services) == SERVICES
        assert services["postgres"]["image"].startswith("postgres:")
        assert services["redis"]["image"].startswith("redis:")
        # The panel is built here; the sample node runs the same image.
        assert services["panel"]["build"] == "."
        assert services["daemon"]["image"] == services["panel"]["image"]
        assert services["daemon"]["command"][:2] == ["daemon", "--config"]
        # So does a heartbeat of its own, with the panel's settings and secrets.
        heartbeat = services["heartbeat"]
        assert heartbeat["image"] == services["panel"]["image"]
        assert heartbeat["command"] == ["heartbeat"]
        assert environment(heartbeat) == environment(services["panel"])
        assert heartbeat["secrets"] == services["panel"]["secrets"]
        assert heartbeat["networks"] == services["panel"]["networks"]

        # Only on demand: the sample node and the dedicated heartbeat.
        profiles = {name: s.get("profiles") for name, s in services.items()}
        assert profiles == {
            "postgres": None,
            "redis": None,
            "panel": None,
            "heartbeat": ["heartbeat"],
            "daemon": ["node"],
        }

    def test_it_passes_the_panels_settings_on_from_dot_env(self) -> None:
        panel = environment(compose()["services"]["panel"])
        for name, default in PASSED_ON.items():
            assert panel[name] == "${" + name + ":-" + default + "}"

    def test_it_checks_the_health_of_every_service(self) -> None:
        services = compose()["services"]
        tests = {
            name: " ".join(service["healthcheck"]["test"])
            for name, service in services.items()
            if "healthcheck" in service
        }
        # The heartbeat serves nothing that could be probed.
        assert set(tests) == SERVICES - {"heartbeat"}
        assert "pg_isready" in tests["postgres"]
        assert "redis-cli ping" in tests["redis"]
        assert "/app/docker/healthcheck.py" in tests["panel"]
        assert (ROOT / "docker" / "healthcheck.py").is_file()
        # The daemon's check knocks on the port its configuration must name.
        assert "8080" in tests["daemon"]

    def test_it_finds_the_panel_healthy_only_while_it_serves(
        self, daphne_url: str
    ) -> None:
        # The panel's /healthz answers ok under Daphne.
        serving = healthcheck(urlsplit(daphne_url).port)
        assert serving.returncode == 0, serving.stderr

        # Where nothing listens, the check fails and says why.
        silent = healthcheck(free_port())
        assert silent.returncode != 0
        assert "healthz:" in silent.stderr

    def test_it_starts_each_service_after_what_it_needs_is_healthy(self) -> None:
        services = compose()["services"]
        needs = {
            name: {
                other: condition["condition"]
                for other, condition in service.get("depends_on", {}).items()
            }
            for name, service in services.items()
        }
        assert needs["panel"] == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }
        assert needs["daemon"] == {"panel": "service_healthy"}
        assert needs["heartbeat"] == {"panel": "service_healthy"}

    def test_it_keeps_state_in_named_volumes_and_secrets_in_files(self) -> None:
        config = compose()
        services = config["services"]
        declared = set(config["volumes"])
        used = {
            volume.split(":")[0]
            for service in services.values()
            for volume in service.get("volumes", [])
            if not volume.startswith(".")
        }
        assert used == declared == {"postgres-data", "redis-data", "daemon-data"}

        panel = environment(services["panel"])
        assert panel["DEBUG"] == "False"
        assert panel["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
        assert panel["ENCRYPTION_KEY_FILE"] == "/run/secrets/encryption_key"
        assert panel["DATABASE_URL"].startswith("postgres://")
        assert panel["REDIS_URL"].startswith("redis://redis:6379/")
        assert set(services["panel"]["secrets"]) == set(config["secrets"])
        assert "SECRET_KEY" not in panel and "ENCRYPTION_KEY" not in panel

    def test_it_lets_the_panel_reach_only_the_nodes_network(self) -> None:
        config = compose()
        services = config["services"]
        (subnet,) = config["networks"]["nodes"]["ipam"]["config"]
        allowed = environment(services["panel"])["DAEMON_ALLOWED_NETWORKS"]
        assert allowed == "${DAEMON_ALLOWED_NETWORKS:-" + subnet["subnet"] + "}"

        # The daemon lives there alone; the database and Redis do not.
        daemon_ip = services["daemon"]["networks"]["nodes"]["ipv4_address"]
        assert daemon_ip.startswith(subnet["subnet"].rsplit(".", 1)[0] + ".")
        for name in ("postgres", "redis"):
            assert services[name]["networks"] == ["backend"]
            assert "ports" not in services[name]

    def test_it_publishes_the_panel_on_loopback_and_the_nodes_ports(self) -> None:
        services = compose()["services"]
        assert services["panel"]["ports"] == [
            "${PANEL_BIND:-127.0.0.1}:${PANEL_PORT:-8000}:8000"
        ]
        game, sftp = services["daemon"]["ports"]
        assert "25565-25574" in game
        assert sftp.endswith(":2022")

    def test_it_passes_the_compose_clients_own_check(self, tmp_path: Path) -> None:
        clients = compose_clients()
        # NB: with no compose client on the machine, the YAML checks above stand
        # alone; with one, each must read the file as they do.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in PASSED_ON and not k.startswith(("PANEL_", "GAME_PORTS"))
        } | COMPOSE_ENV
        for client in clients:
            result = subprocess.run(
                [*client, "--file", str(ROOT / "docker-compose.yml"), "config"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            resolved = yaml.safe_load(result.stdout)
            assert set(resolved["services"]) == SERVICES
            panel = environment(resolved["services"]["panel"])
            for name, default in PASSED_ON.items():
                assert panel.get(name, "") == default, name
            assert "compose-test-password@postgres:5432" in panel["DATABASE_URL"]

            # Without the database password it refuses to go on, and says why.
            env_without = {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"}
            refused = subprocess.run(
                [*client, "--file", str(ROOT / "docker-compose.yml"), "config"],
                cwd=tmp_path,
                env=env_without,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode != 0
            assert "set POSTGRES_PASSWORD in .env" in refused.stderr
        if not clients:
            assert compose()["services"]
