import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import (
    Aggregate,
    Count,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from nodes import credentials
from nodes.hosts import HostRefused, normalize_host

if TYPE_CHECKING:
    from nodes.daemon import Ping

MB_PER_GB = 1024
MAX_CPU_CORES = 4096
MAX_MEMORY_GB = 65536  # 64 TB
MAX_DISK_GB = 1048576  # 1 PB
MAX_UPLOAD_LIMIT_MB = 10240

# The heartbeat's thresholds: what the node page counts as a problem.
SLOW_LATENCY_MS = 50
CLOCK_SKEW_S = 30
HEADROOM = 0.1  # of the machine, left to the system beyond the node's limits
LATENCY_HISTORY = 60  # latencies kept for the sparkline, about 30 min at 30 s
UPTIME_WINDOW = timedelta(hours=24)


def _between(low: int, high: int) -> list:
    return [MinValueValidator(low), MaxValueValidator(high)]


def validate_host(value: str) -> None:
    try:
        normalize_host(value)
    except HostRefused as e:
        raise ValidationError(str(e), code="host") from None


# Each resource: its field, its name in a sentence, its unit.
RESOURCE_NAMES = (
    ("cpu", "CPU", "%"),
    ("memory_mb", "memory", "MB"),
    ("disk_mb", "disk", "MB"),
)


@dataclass(frozen=True)
class Resources:
    """CPU in percent of one core, memory and disk in MB."""

    cpu: int
    memory_mb: int
    disk_mb: int

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources(
            self.cpu - other.cpu,
            self.memory_mb - other.memory_mb,
            self.disk_mb - other.disk_mb,
        )


def _of_servers(aggregate: Aggregate) -> Coalesce:
    """A per-node aggregate of its servers, as a subquery: no join, no GROUP BY."""
    from servers.models import Server

    totals = (
        Server.objects.filter(node=OuterRef("pk"))
        .order_by()
        .values("node")
        .annotate(total=aggregate)
        .values("total")
    )
    return Coalesce(Subquery(totals), Value(0))


class NodeQuerySet(QuerySet):
    def with_usage(self) -> "NodeQuerySet":
        """Annotate what the servers use, and how many there are, in one query."""
        return self.annotate(
            used_cpu=_of_servers(Sum("cpu")),
            used_memory_mb=_of_servers(Sum("memory_mb")),
            used_disk_mb=_of_servers(Sum("disk_mb")),
            server_count=_of_servers(Count("pk")),
        )


class Node(models.Model):
    class Protocol(models.TextChoices):
        HTTP = "HTTP", "HTTP"
        HTTPS = "HTTPS", "HTTPS (the daemon terminates TLS)"
        HTTPS_PROXY = "HTTPS_PROXY", "HTTPS behind a reverse proxy"

    class Status(models.TextChoices):
        ONLINE = "online"
        OFFLINE = "offline"

    name = models.CharField("display name", max_length=100)
    location = models.ForeignKey(
        "locations.Location",
        models.PROTECT,
        null=True,
        blank=True,
        related_name="nodes",
    )
    host = models.CharField(
        max_length=253,
        validators=[validate_host],
        help_text="IP address or DNS name of the daemon, without scheme or path.",
    )
    port = models.PositiveIntegerField(
        "daemon port", default=8080, validators=_between(1, 65535)
    )
    protocol = models.CharField(max_length=11, choices=Protocol, default=Protocol.HTTPS)
    cpu_cores = models.PositiveIntegerField(
        "CPU cores", validators=_between(1, MAX_CPU_CORES)
    )
    memory_mb = models.PositiveIntegerField(
        "memory (MB)", validators=_between(MB_PER_GB, MAX_MEMORY_GB * MB_PER_GB)
    )
    disk_mb = models.PositiveIntegerField(
        "disk (MB)", validators=_between(MB_PER_GB, MAX_DISK_GB * MB_PER_GB)
    )
    sftp_port = models.PositiveIntegerField(
        "SFTP port", default=2022, validators=_between(1, 65535)
    )
    upload_limit_mb = models.PositiveIntegerField(
        "upload limit (MB)", default=100, validators=_between(1, MAX_UPLOAD_LIMIT_MB)
    )
    token_id = models.CharField(max_length=16, unique=True, editable=False)
    token_encrypted = models.TextField(editable=False)
    token_rotated = models.DateTimeField(auto_now_add=True, editable=False)
    status = models.CharField(
        max_length=8, choices=Status, default=Status.OFFLINE, editable=False
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True, editable=False)
    last_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)
    # Why the last heartbeat failed: a DaemonError category and its message.
    last_error_category = models.CharField(max_length=20, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    # The daemon's clock minus the panel's, in seconds, at the last heartbeat.
    clock_offset_s = models.FloatField(null=True, blank=True, editable=False)
    # The daemon's last /api/system answer, without its time.
    daemon_info = models.JSONField(default=dict, blank=True, editable=False)
    # The last LATENCY_HISTORY latencies in ms, newest last.
    latency_history = models.JSONField(default=list, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "port"],
                name="node_host_port_unique",
                violation_error_message="Another node already uses this host and port.",
            ),
            models.CheckConstraint(
                condition=Q(cpu_cores__gte=1)
                & Q(memory_mb__gte=1)
                & Q(disk_mb__gte=1)
                & Q(port__gte=1, port__lte=65535)
                & Q(sftp_port__gte=1, sftp_port__lte=65535)
                & Q(upload_limit_mb__gte=1, upload_limit_mb__lte=MAX_UPLOAD_LIMIT_MB),
                name="node_limits_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def address(self) -> str:
        """The host as it goes before a port or after a user: IPv6 in brackets."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        scheme = "http" if self.protocol == self.Protocol.HTTP else "https"
        return f"{scheme}://{self.address}:{self.port}"

    @property
    def upload_limit_bytes(self) -> int:
        return self.upload_limit_mb * 1024 * 1024

    @property
    def memory_gb(self) -> int:
        return self.memory_mb // MB_PER_GB

    @property
    def disk_gb(self) -> int:
        return self.disk_mb // MB_PER_GB

    @property
    def is_online(self) -> bool:
        return self.status == self.Status.ONLINE

    @property
    def limits(self) -> Resources:
        return Resources(self.cpu_cores * 100, self.memory_mb, self.disk_mb)

    def usage(self, excluding: "int | None" = None) -> Resources:
        """What the node's servers use, from annotations when the query made them."""
        if excluding is None and hasattr(self, "used_cpu"):
            return Resources(self.used_cpu, self.used_memory_mb, self.used_disk_mb)
        servers = self.servers.exclude(pk=excluding) if self.pk else self.servers.none()
        totals = servers.aggregate(
            cpu=Coalesce(Sum("cpu"), 0),
            memory_mb=Coalesce(Sum("memory_mb"), 0),
            disk_mb=Coalesce(Sum("disk_mb"), 0),
        )
        return Resources(**totals)

    def free(self, excluding: "int | None" = None) -> Resources:
        return self.limits - self.usage(excluding)

    def shortfalls(
        self, wanted: Resources, excluding: "int | None" = None
    ) -> dict[str, str]:
        """Why a server asking for `wanted` does not fit: a sentence a resource."""
        free = self.free(excluding)
        sentences = {}
        for field, name, unit in RESOURCE_NAMES:
            left, asked = getattr(free, field), getattr(wanted, field)
            if asked > left:
                sentences[field] = (
                    f"Node {self.name} has {max(left, 0)} {unit} of {name} free; "
                    f"this server asks for {asked} {unit}."
                )
        return sentences

    def clean(self) -> None:
        # Lowering limits below what the servers use is refused (the database
        # refuses it too; this says so in words).
        if not self.pk or None in (self.cpu_cores, self.memory_mb, self.disk_mb):
            return
        used = self.usage()
        errors = {}
        if self.cpu_cores * 100 < used.cpu:
            errors["cpu_cores"] = (
                f"The servers on this node use {used.cpu} % CPU "
                f"({-(-used.cpu // 100)} cores); the node needs at least that."
            )
        if self.memory_mb < used.memory_mb:
            errors["memory_mb"] = (
                f"The servers on this node use {used.memory_mb} MB of memory; "
                "the node needs at least that."
            )
        if self.disk_mb < used.disk_mb:
            errors["disk_mb"] = (
                f"The servers on this node use {used.disk_mb} MB of disk; "
                "the node needs at least that."
            )
        if errors:
            raise ValidationError(errors)

    def set_new_token(self) -> str:
        """Give the node fresh credentials (unsaved); return the token in clear."""
        token = credentials.generate_token()
        self.token_encrypted = credentials.encrypt(token)
        if not self.token_id:
            self.token_id = credentials.generate_token_id()
        return token

    def rotate_token(self) -> str:
        """Replace the token (the token ID stays) and return the new one in clear."""
        from django.utils import timezone

        token = self.set_new_token()
        self.token_rotated = timezone.now()
        self.save(update_fields=["token_encrypted", "token_rotated"])
        return token

    def daemon_token(self) -> str:
        """The token in clear, for signing requests and the shown-once page."""
        return credentials.decrypt(self.token_encrypted)

    def daemon_config(
        self,
        token: str,
        *,
        listen: str = "0.0.0.0",
        data_dir: str = "/var/lib/stellar",
        panel_url: str | None = None,
    ) -> str:
        """The daemon's configuration file (TOML) for this node.

        The keywords suit a daemon on the panel's own machine: the demo and tests.
        """
        from django.template.loader import render_to_string

        return render_to_string(
            "nodes/daemon_config.toml",
            {
                "node": self,
                "token": token,
                "panel_url": panel_url or settings.PANEL_URL,
                "listen": listen,
                "data_dir": data_dir,
            },
        )

    # The heartbeat

    def record_answer(self, ping: "Ping", when: datetime) -> "NodeStatusChange | None":
        """Take the daemon's answer to a heartbeat; return the status change."""
        latency = round(ping.latency_ms)
        self.latency_ms = latency
        self.latency_history = [*self.latency_history, latency][-LATENCY_HISTORY:]
        self.last_heartbeat = when
        self.last_error_category = self.last_error = ""
        self.clock_offset_s = ping.clock_offset_s
        self.daemon_info = {k: v for k, v in ping.system.items() if k != "time"}
        return self._change_status(self.Status.ONLINE, "", "", when)

    def record_failure(
        self, category: str, message: str, when: datetime
    ) -> "NodeStatusChange | None":
        """Take a failed heartbeat; return the status change (unsaved) if any.

        The latency history and the daemon's info stay: they describe the node as
        it last answered.
        """
        self.latency_ms = None
        self.last_error_category = category
        self.last_error = message
        return self._change_status(self.Status.OFFLINE, category, message, when)

    def _change_status(
        self, new: str, reason: str, message: str, when: datetime
    ) -> "NodeStatusChange | None":
        old, self.status = self.status, new
        if old == new:
            return None
        return NodeStatusChange(
            node=self, old=old, new=new, reason=reason, message=message, created=when
        )

    @property
    def is_slow(self) -> bool:
        return self.latency_ms is not None and self.latency_ms > SLOW_LATENCY_MS

    def seconds_since_heartbeat(self) -> int | None:
        if self.last_heartbeat is None:
            return None
        return max(int((timezone.now() - self.last_heartbeat).total_seconds()), 0)

    def uptime(self, since: datetime | None = None) -> float:
        """The fraction of the time from `since` (24 h ago) to now the node was online.

        Computed from the status changes; before the first one, the node was in the
        state that change left. Time before the node existed does not count.
        """
        now = timezone.now()
        start = max(since or now - UPTIME_WINDOW, self.created or now)
        if start >= now:
            return 1.0 if self.is_online else 0.0
        changes = list(
            self.status_changes.filter(created__gte=start)
            .order_by("created", "pk")
            .values_list("old", "new", "created")
        )
        status = changes[0][0] if changes else self.status
        online, at = timedelta(), start
        for _, new, created in changes:
            if status == self.Status.ONLINE:
                online += created - at
            status, at = new, created
        if status == self.Status.ONLINE:
            online += now - at
        return online / (now - start)

    def uptime_percent(self) -> float:
        """The uptime over 24 h in percent, rounded down: 99.99 % is not 100 %."""
        return math.floor(self.uptime() * 1000) / 10

    def recent_status_changes(self) -> "QuerySet[NodeStatusChange]":
        return self.status_changes.order_by("-created", "-pk")[:10]

    def latency_points(self) -> str:
        """The latency history as SVG polyline points in a 120 × 30 box."""
        history = self.latency_history
        if len(history) < 2:
            return ""
        top = max(max(history), 1)
        step = 120 / (len(history) - 1)
        return " ".join(
            f"{i * step:.1f},{30 - 28 * ms / top:.1f}" for i, ms in enumerate(history)
        )

    def warnings(self) -> list[str]:
        """What looks wrong about the node as it last answered, in sentences."""
        warnings = []
        if self.clock_offset_s is not None and abs(self.clock_offset_s) > CLOCK_SKEW_S:
            way = "ahead of" if self.clock_offset_s > 0 else "behind"
            warnings.append(
                f"The daemon's clock is {abs(self.clock_offset_s):.0f} s {way} the "
                "panel's. Past 60 s every signed request is refused: run NTP "
                "(chrony or systemd-timesyncd) on both machines."
            )
        warnings += self._limit_warnings()
        if self.is_slow:
            warnings.append(
                f"The daemon takes {self.latency_ms} ms to answer a heartbeat, over "
                f"{SLOW_LATENCY_MS} ms: consoles and power actions will feel slow. "
                "Is the node far from the panel, or overloaded?"
            )
        return warnings

    def _limit_warnings(self) -> list[str]:
        machine = self.daemon_info
        checks = (
            ("CPU", self.cpu_cores, machine.get("cpu_count"), 1, "cores"),
            ("memory", self.memory_mb, machine.get("memory_bytes"), 2**20, "MB"),
            ("disk", self.disk_mb, machine.get("disk_bytes"), 2**20, "MB"),
        )
        warnings = []
        for name, limit, total, per_unit, unit in checks:
            if not isinstance(total, int | float) or total <= 0:
                continue
            has = int(total // per_unit)
            if limit * per_unit > total:
                warnings.append(
                    f"The node may give servers {limit} {unit} of {name}, but its "
                    f"machine has {has} {unit}: lower the node's limit to what "
                    "the machine has."
                )
            elif limit * per_unit > total * (1 - HEADROOM):
                warnings.append(
                    f"The node may give servers {limit} {unit} of {name} of its "
                    f"machine's {has} {unit}, leaving less than "
                    f"{HEADROOM:.0%} to the system and the daemon."
                )
        return warnings

    def advice(self) -> list[str]:
        """What to check, in order, when the last heartbeat failed as it did."""
        if self.is_online or not self.last_error_category:
            return []
        advice = ADVICE.get(self.last_error_category, ADVICE_OTHERWISE)
        return [sentence.format(port=self.port, host=self.host) for sentence in advice]

    def blockers(self) -> list[str]:
        """What keeps the node from being deleted, in words; empty when nothing."""
        reasons = []
        servers = list(self.servers.values_list("name", flat=True)[:6])
        if servers:
            shown = ", ".join(servers[:5]) + (", …" if len(servers) > 5 else "")
            reasons.append(f"it has servers ({shown})")
        assigned = self.allocations.filter(server__isnull=False).count()
        if assigned:
            reasons.append(f"{assigned} of its allocations are assigned to servers")
        return reasons


# What to check after a failed heartbeat, by the DaemonError category.
ADVICE: dict[str, tuple[str, ...]] = {
    "refused": (
        "Nothing accepts connections on port {port} of {host}: the daemon is not "
        "running, listens on another port, or a firewall rejects the connection.",
        "Start the daemon: `systemctl status` of its service shows whether it "
        "runs and why it stopped; the development daemon starts with "
        "`uv run python -m devdaemon --config <its configuration file>`.",
        "Check that the port in the daemon's configuration file is {port}, and "
        "that the node's firewall lets the panel reach TCP port {port}.",
    ),
    "timeout": (
        "The daemon did not answer in time. A firewall may drop the packets "
        "silently, the machine may be down or unreachable, or it may be too "
        "overloaded to answer.",
        "Check that the machine is up and that the panel can reach {host} "
        "(ping, traceroute), then that the firewall lets TCP port {port} through.",
    ),
    "dns": (
        "The host name {host} does not resolve. Check its spelling on this page "
        "and its DNS record, and that the panel's machine can resolve it.",
    ),
    "tls": (
        "The TLS handshake failed: the daemon's certificate does not match {host}, "
        "has expired, or is signed by a certificate authority the panel does not "
        "trust.",
        "For a self-signed certificate or a private authority, add that "
        "authority's certificate to the bundle DAEMON_CA_BUNDLE names.",
        'If a reverse proxy terminates TLS, choose the protocol "HTTPS behind a '
        'reverse proxy"; a daemon that speaks plain HTTP needs the HTTP protocol.',
    ),
    "unauthorized": (
        "The daemon refused the panel's signature. Either its token is not this "
        "node's (rotate the token on the Credentials page and copy the new "
        "configuration file to the node), or the two clocks are more than 60 s "
        "apart (run NTP on both machines).",
    ),
    "policy": (
        "The panel refused to connect: {host} resolves to an address where daemons "
        "may not live (loopback, private, link-local or reserved).",
        "If the node really lives on such a network, add it to the "
        "DAEMON_ALLOWED_NETWORKS setting.",
    ),
    "bad_answer": (
        "Something answers on port {port}, but not a StellarPanel daemon: another "
        "web server, a reverse proxy's error page, or a daemon too old to speak "
        "this panel's protocol.",
        "Check which program listens on port {port} of {host}, and that a reverse "
        "proxy in front of the daemon forwards to it.",
    ),
    "internal": (
        "The panel itself failed to ping the daemon; the panel's log says why.",
    ),
}
ADVICE_OTHERWISE = (
    "The daemon answered the heartbeat with an error. Its log on the node says why.",
)


class NodeStatusChange(models.Model):
    """A node went online or offline: one row a change, which makes its history."""

    node = models.ForeignKey(Node, models.CASCADE, related_name="status_changes")
    old = models.CharField(max_length=8, choices=Node.Status)
    new = models.CharField(max_length=8, choices=Node.Status)
    # The DaemonError category of a node that went offline; blank for online.
    reason = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["node", "created"], name="node_status_change_by_time")
        ]

    def __str__(self) -> str:
        return f"{self.node_id}: {self.old} → {self.new}"


class Allocation(models.Model):
    # The database removes a node's free allocations with it, and refuses to delete
    # a node while any of them is assigned (see the node_delete_guard trigger).
    node = models.ForeignKey(Node, models.DO_NOTHING, related_name="allocations")
    ip = models.GenericIPAddressField("IP address", unpack_ipv4=True)
    port = models.PositiveIntegerField(validators=_between(1024, 65535))
    alias = models.CharField(max_length=253, blank=True)
    notes = models.CharField(max_length=256, blank=True)
    # Deleting a server frees its allocations: the database does it (see the
    # server_delete_frees trigger), whatever deletes the server.
    server = models.ForeignKey(
        "servers.Server",
        models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="allocations",
    )
    is_primary = models.BooleanField(
        "primary", default=False, help_text="The server's main address."
    )

    class Meta:
        ordering = ["ip", "port"]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "ip", "port"],
                name="allocation_unique_per_node",
                violation_error_message="This node already has this IP and port.",
            ),
            models.UniqueConstraint(
                fields=["server"],
                condition=Q(is_primary=True),
                name="allocation_one_primary_per_server",
                violation_error_message="A server has one primary allocation.",
            ),
            models.CheckConstraint(
                condition=Q(is_primary=False) | Q(server__isnull=False),
                name="allocation_primary_is_assigned",
                violation_error_message="Only an assigned allocation can be primary.",
            ),
            models.CheckConstraint(
                condition=Q(port__gte=1024, port__lte=65535),
                name="allocation_port_in_range",
                violation_error_message="Ports go from 1024 to 65535.",
            ),
        ]

    def __str__(self) -> str:
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{ip}:{self.port}"

    def clean(self) -> None:
        if self.server_id and self.node_id and self.server.node_id != self.node_id:
            raise ValidationError(
                {"server": f"{self.server} is on another node than this allocation."}
            )
