"""SFTP logins: a node's daemon asks whether a username and password open a server.

A username is `{server_id}.{email}`; server ids hold no dot, e-mail addresses may, so
it splits at the first dot. The password is the user's panel password. The server's
owner and admins get in, and only through the node that runs the server.

Failures are counted per (address, e-mail address) and per e-mail address over a
sliding window, whatever server id they name; this covers the counts per (address,
username) and per username, which stand alone only for a username without an
e-mail address. Past either limit the attempt is refused without looking at the
password, until enough failures age out of the window: the lockout ends by itself,
and refused attempts during it do not prolong it.

Every attempt is stored as pending before it is counted or checked, and a pending
attempt counts as a failure: attempts made at the same time count each other, so
they cannot all pass the throttle while their passwords are being hashed. An
attempt cut short by a crash stays pending, a failure until it ages out.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from nodes.models import Node
from servers.models import Server, SftpLogin

MAX_USERNAME_LENGTH = 320
MAX_PASSWORD_LENGTH = 4096
# What a granted session may do; the daemon's jail bounds where.
PERMISSIONS = ["file.read", "file.create", "file.update", "file.delete"]
WRONG = "The username or password is wrong."


@dataclass(frozen=True)
class Grant:
    server: Server
    user: AbstractBaseUser

    def answer(self) -> dict:
        return {
            "server": self.server.public_id,
            "user": self.user.email,
            "permissions": PERMISSIONS,
        }


class Refused(Exception):
    """The attempt fails. `message` is for the daemon, `reason` for the log."""

    def __init__(self, message: str, reason: str, throttled: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.throttled = throttled


def split_username(username: str) -> tuple[str, str]:
    """The server id and the e-mail address of `{server_id}.{email}`."""
    server_id, _, email = username.partition(".")
    if not server_id or "@" not in email.strip("@"):
        raise Refused(
            "The username must be the server ID, a dot, then your e-mail address, "
            "as in abc123defg.you@example.com.",
            "malformed username",
        )
    return server_id, email


def log_in(node: Node, username: str, password: str, ip: str) -> Grant:
    """Record one attempt, check it, and grant it or raise Refused."""
    username = username.lower()
    # NB: the pending row must be committed, for other attempts to see it, before
    # this one is checked: this relies on autocommit (no ATOMIC_REQUESTS).
    entry = SftpLogin.objects.create(
        username=username,
        email=_email_in(username),
        ip=ip,
        node_name=node.name,
        result=SftpLogin.Result.PENDING,
    )
    try:
        throttle(entry)
        grant = check(node, username, password, entry)
    except Refused as refused:
        result = SftpLogin.Result
        entry.result = result.THROTTLED if refused.throttled else result.REFUSED
        entry.reason = refused.reason[:200]
        _save_result(entry)
        raise
    entry.result = SftpLogin.Result.GRANTED
    _save_result(entry)
    return grant


def _email_in(username: str) -> str:
    try:
        return split_username(username)[1]
    except Refused:
        return ""


def _save_result(entry: SftpLogin) -> None:
    fields = ["result", "reason", "server_public_id", "user_name"]
    entry.save(update_fields=fields)


def check(node: Node, username: str, password: str, entry: SftpLogin) -> Grant:
    server_id, email = split_username(username)
    entry.server_public_id = server_id[:16]
    users = get_user_model().objects.filter(email__iexact=email, is_active=True)
    user = users.first() if len(users[:2]) == 1 else None
    if user is None:
        # As long as a real check, so that timing does not tell who has an account.
        make_password(password)
        raise Refused(WRONG, "no single active user has this e-mail address")
    entry.user_name = user.get_username()
    if not user.check_password(password):
        raise Refused(WRONG, "wrong password")
    server = Server.objects.filter(public_id=server_id).select_related("node").first()
    if server is None:
        raise Refused(WRONG, "no such server")
    if server.node_id != node.pk:
        raise Refused(WRONG, f"the server runs on node {server.node.name}")
    if not (user.is_staff or server.owner_id == user.pk):
        raise Refused(WRONG, "the user neither owns the server nor is an admin")
    if server.status == Server.Status.INSTALLING:
        # The install script is rewriting the files; a failed install stays open
        # so that its files can be mended.
        raise Refused(
            "The server is installing; log in again when it is done.",
            "the server is installing",
        )
    return Grant(server, user)


def throttle(entry: SftpLogin) -> None:
    """Refuse an e-mail address that failed too often lately, from this IP or any."""
    failures = _failures(entry)
    for recent, limit in (
        (failures.filter(ip=entry.ip), settings.SFTP_MAX_FAILURES_PER_ADDRESS),
        (failures, settings.SFTP_MAX_FAILURES_PER_USERNAME),
    ):
        until = _locked_until(recent, limit)
        if until is not None:
            seconds = max(1, round((until - timezone.now()).total_seconds()))
            raise Refused(
                f"Too many failed logins for {entry.username}; "
                f"try again in {seconds} s.",
                f"too many failures; locked for {seconds} s more",
                throttled=True,
            )


def _failures(entry: SftpLogin) -> QuerySet[SftpLogin]:
    """Other recent failed or pending attempts of the e-mail address (or username)."""
    since = timezone.now() - _window()
    if entry.email:
        same = SftpLogin.objects.filter(email=entry.email)
    else:
        same = SftpLogin.objects.filter(username=entry.username)
    failed = [SftpLogin.Result.REFUSED, SftpLogin.Result.PENDING]
    return same.filter(result__in=failed, created__gte=since).exclude(pk=entry.pk)


def _locked_until(failures: QuerySet[SftpLogin], limit: int) -> datetime | None:
    """When the window will hold fewer than `limit` of these failures."""
    dates = list(
        failures.order_by("-created").values_list("created", flat=True)[:limit]
    )
    if len(dates) < limit:
        return None
    return dates[-1] + _window()


def _window() -> timedelta:
    return timedelta(seconds=settings.SFTP_FAILURE_WINDOW_S)
