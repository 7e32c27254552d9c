"""SFTP from a real client, through a real development daemon, authorised by the panel.

OpenSSH's sftp runs in batch mode; its password comes from SSH_ASKPASS, as a person's
would from a prompt. The daemon asks the live panel about every password.
"""

import asyncio
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from nodes.models import Node
from servers.models import Server, SftpLogin
from tests.conftest import (
    PASSWORD,
    free_port,
    install_on_daemon,
    make_node,
    make_user,
    running_daemon,
)
from tests.servers.conftest import daemon_state, make_server, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class SftpNode:
    """A node whose daemon serves SFTP and asks the live panel about logins."""

    node: Node
    data_dir: Path

    def files(self, server: Server) -> Path:
        return self.data_dir / "servers" / server.public_id


@pytest.fixture
def sftp_node(
    loopback_node: Node, tmp_path: Path, live_server: LiveServer
) -> Iterator[SftpNode]:
    data_dir = tmp_path / "daemon"
    with running_daemon(loopback_node, data_dir, live_server.url):
        loopback_node.save(update_fields=["sftp_port"])
        yield SftpNode(loopback_node, data_dir)


@pytest.fixture
def server(sftp_node: SftpNode, owner: User) -> Server:
    server = make_server(sftp_node.node, owner)
    install(sftp_node.node, server)
    return server


def install(node: Node, server: Server) -> None:
    """Install the server on its daemon and wait until the live panel knows it."""
    install_on_daemon(node, server.daemon_config())
    wait_for(lambda: daemon_state(node, server) == "offline")
    # The daemon has told the live panel so: the server is no longer installing.
    wait_for(lambda: Server.objects.get(pk=server.pk).status == "offline")


def openssh(
    node: Node, username: str, password: str, commands: str, cwd: Path
) -> subprocess.CompletedProcess:
    """Run OpenSSH's sftp in batch mode, as `username`, typing `password`."""
    askpass = cwd / "askpass.sh"
    secret = cwd / "password.txt"
    secret.write_text(password)
    askpass.write_text(f"#!/bin/sh\ncat '{secret}'\n")
    askpass.chmod(0o700)
    batch = cwd / "batch.txt"
    batch.write_text(commands)
    env = os.environ | {
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    return subprocess.run(
        [
            "sftp",
            # -b turns BatchMode on, which forbids passwords; the first value wins.
            "-o",
            "BatchMode=no",
            "-b",
            str(batch),
            "-P",
            str(node.sftp_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
            f"{username}@127.0.0.1",
        ],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def can_log_in(node: Node, username: str, password: str = PASSWORD) -> bool:
    async def attempt() -> bool:
        try:
            async with (
                asyncssh.connect(
                    "127.0.0.1",
                    node.sftp_port,
                    username=username,
                    password=password,
                    known_hosts=None,
                    client_keys=None,
                    preferred_auth="password",
                ) as connection,
                connection.start_sftp_client() as sftp,
            ):
                await sftp.listdir(".")
            return True
        except asyncssh.PermissionDenied:
            return False

    return asyncio.run(attempt())


def test_the_owner_uploads_lists_renames_downloads_and_deletes(
    sftp_node: SftpNode, server: Server, owner: User, tmp_path: Path
) -> None:
    work = tmp_path / "client"
    work.mkdir()
    (work / "notes.txt").write_text("gg wp\n")
    username = f"{server.public_id}.{owner.email}"

    result = openssh(
        sftp_node.node,
        username,
        PASSWORD,
        "put notes.txt\n"
        "mkdir plugins\n"
        "rename notes.txt plugins/readme.txt\n"
        "ls -l plugins\n"
        "get plugins/readme.txt back.txt\n",
        work,
    )

    assert result.returncode == 0, result.stderr
    assert "readme.txt" in result.stdout
    assert (work / "back.txt").read_text() == "gg wp\n"
    files = sftp_node.files(server)
    assert (files / "plugins" / "readme.txt").read_text() == "gg wp\n"
    assert not (files / "notes.txt").exists()

    result = openssh(
        sftp_node.node, username, PASSWORD, "rm plugins/readme.txt\n", work
    )

    assert result.returncode == 0, result.stderr
    assert not (files / "plugins" / "readme.txt").exists()
    entry = SftpLogin.objects.first()
    assert (entry.result, entry.user_name) == ("granted", owner.username)
    assert entry.ip == "127.0.0.1"
    assert entry.node_name == sftp_node.node.name


def test_refusals_reach_the_client_and_the_log(
    sftp_node: SftpNode, server: Server, owner: User, outsider: User, tmp_path: Path
) -> None:
    node = sftp_node.node
    assert not can_log_in(node, f"{server.public_id}.{owner.email}", "wrong")
    assert not can_log_in(node, f"{server.public_id}.{outsider.email}")
    assert not can_log_in(node, f"zzzzzzzzzz.{owner.email}")
    assert not can_log_in(node, "no-dot-at-all")

    username = f"{server.public_id}.{owner.email}"
    result = openssh(node, username, "nope", "ls\n", tmp_path)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr

    reasons = list(SftpLogin.objects.values_list("result", "reason"))
    assert reasons == [
        ("refused", "wrong password"),
        ("refused", "malformed username"),
        ("refused", "no such server"),
        ("refused", "the user neither owns the server nor is an admin"),
        ("refused", "wrong password"),
    ]
    stored = str(list(SftpLogin.objects.values()))
    assert "nope" not in stored and "wrong'" not in stored


def test_a_server_is_closed_through_another_nodes_daemon(
    sftp_node: SftpNode,
    server: Server,
    owner: User,
    location,
    tmp_path: Path,
    live_server: LiveServer,
) -> None:
    other = make_node(
        "other", location=location, host="127.0.0.1", port=free_port(), protocol="HTTP"
    )
    with running_daemon(other, tmp_path / "other", live_server.url):
        other.save(update_fields=["sftp_port"])

        assert not can_log_in(other, f"{server.public_id}.{owner.email}")

    entry = SftpLogin.objects.first()
    assert entry.node_name == "other"
    assert entry.reason == f"the server runs on node {sftp_node.node.name}"
    # Through its own node, the same login works.
    assert can_log_in(sftp_node.node, f"{server.public_id}.{owner.email}")


def test_an_admin_and_a_dotted_address_get_in(
    sftp_node: SftpNode, server: Server, admin_user: User
) -> None:
    node = sftp_node.node
    dotted = make_user("dotted")
    User.objects.filter(pk=dotted.pk).update(email="first.last+mc@example.co.uk")
    theirs = make_server(node, dotted)
    install(node, theirs)

    assert can_log_in(node, f"{server.public_id}.{admin_user.email}")
    assert can_log_in(node, f"{theirs.public_id}.first.last+mc@example.co.uk")


def test_failures_lock_the_username_out_until_they_age_out(
    settings, sftp_node: SftpNode, server: Server, owner: User
) -> None:
    settings.SFTP_MAX_FAILURES_PER_ADDRESS = 2
    settings.SFTP_FAILURE_WINDOW_S = 3
    node = sftp_node.node
    username = f"{server.public_id}.{owner.email}"

    assert not can_log_in(node, username, "guess one")
    assert not can_log_in(node, username, "guess two")
    # Locked out: even the right password is refused, unseen.
    assert not can_log_in(node, username)
    assert SftpLogin.objects.first().result == SftpLogin.Result.THROTTLED

    wait_for(lambda: can_log_in(node, username), seconds=10)


def test_a_session_ends_when_the_server_is_deleted(
    sftp_node: SftpNode, server: Server, owner: User, admin_client: Client
) -> None:
    node = sftp_node.node

    def delete() -> None:
        admin_client.post(f"/admin/servers/{server.public_id}/delete/")
        # The thread's own database connection, which nothing else would close.
        connections.close_all()

    async def session_after_delete() -> None:
        async with (
            asyncssh.connect(
                "127.0.0.1",
                node.sftp_port,
                username=f"{server.public_id}.{owner.email}",
                password=PASSWORD,
                known_hosts=None,
                client_keys=None,
                preferred_auth="password",
            ) as connection,
            connection.start_sftp_client() as sftp,
        ):
            await sftp.listdir(".")
            await asyncio.to_thread(delete)
            # The client sends nothing more: only the daemon can end the session.
            await asyncio.wait_for(connection.wait_closed(), 10)

    asyncio.run(session_after_delete())
    assert not Server.objects.filter(pk=server.pk).exists()


def test_the_host_key_is_kept_private(sftp_node: SftpNode, server: Server) -> None:
    keys = [
        key for key in sftp_node.data_dir.glob("*host*key*") if key.suffix != ".pub"
    ]
    assert keys, "the daemon keeps its host key under its data directory"
    assert all(stat.S_IMODE(key.stat().st_mode) & 0o077 == 0 for key in keys)
