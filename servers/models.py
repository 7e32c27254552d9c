import secrets
import string

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q, Value

from nodes.models import Allocation, Resources

PUBLIC_ID_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_ID_LENGTH = 10
MAX_CPU_PERCENT = 4096 * 100
# The game server that the development daemon's install script writes.
DEFAULT_STARTUP = (
    "{{PYTHON}} gameserver.py --ip {{SERVER_IP}} --port {{SERVER_PORT}} "
    "--memory {{SERVER_MEMORY}}"
)


# The power buttons of a server's page, and those the node page offers on each.
POWER_BUTTONS = [
    ("start", "Start"),
    ("restart", "Restart"),
    ("stop", "Stop"),
    ("kill", "Kill"),
]
QUICK_ACTIONS = [("restart", "Restart"), ("stop", "Stop")]


def generate_public_id() -> str:
    """10 characters of [a-z0-9]: part of SFTP usernames, so never a dot."""
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


class Server(models.Model):
    class Status(models.TextChoices):
        INSTALLING = "installing"
        INSTALL_FAILED = "install_failed", "Install failed"
        OFFLINE = "offline"
        STARTING = "starting"
        RUNNING = "running"
        STOPPING = "stopping"

    public_id = models.CharField(
        "ID", max_length=16, unique=True, default=generate_public_id, editable=False
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="servers"
    )
    node = models.ForeignKey("nodes.Node", models.PROTECT, related_name="servers")
    cpu = models.PositiveIntegerField(
        "CPU (%)",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CPU_PERCENT)],
        help_text="Percent of one core: 100 is one core, 250 two and a half.",
    )
    memory_mb = models.PositiveIntegerField(
        "memory (MB)", validators=[MinValueValidator(1)]
    )
    disk_mb = models.PositiveIntegerField(
        "disk (MB)", validators=[MinValueValidator(1)]
    )
    startup = models.CharField(
        "startup command",
        max_length=1000,
        default=DEFAULT_STARTUP,
        db_default=DEFAULT_STARTUP,
        help_text=(
            "The command line the daemon runs in the server's directory. "
            "{{SERVER_IP}}, {{SERVER_PORT}} and {{SERVER_MEMORY}} are filled in."
        ),
    )
    environment = models.JSONField(
        default=dict,
        db_default=Value({}, models.JSONField()),
        blank=True,
        help_text='Variables for the server process, such as {"MOTD": "Welcome"}.',
    )
    status = models.CharField(max_length=14, choices=Status, default=Status.INSTALLING)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cpu__gte=1) & Q(memory_mb__gte=1) & Q(disk_mb__gte=1),
                name="server_resources_positive",
            ),
            models.CheckConstraint(
                condition=~Q(public_id__contains="."),
                name="server_public_id_has_no_dot",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def resources(self) -> Resources:
        return Resources(self.cpu, self.memory_mb, self.disk_mb)

    def allows(self, action: str) -> bool:
        """Whether a power action makes sense in the server's last known state."""
        running = self.status in (self.Status.STARTING, self.Status.RUNNING)
        return {
            "start": self.status == self.Status.OFFLINE,
            "stop": running,
            "restart": running or self.status == self.Status.OFFLINE,
            "kill": running or self.status == self.Status.STOPPING,
        }.get(action, False)

    def daemon_config(self) -> dict:
        """The server as PROTOCOL.md's "server config", for its daemon."""
        allocations = sorted(self.allocations.all(), key=lambda a: not a.is_primary)
        addresses = [{"ip": a.ip, "port": a.port} for a in allocations]
        return {
            "id": self.public_id,
            "name": self.name,
            "limits": {
                "cpu": self.cpu,
                "memory_mb": self.memory_mb,
                "disk_mb": self.disk_mb,
            },
            "allocations": {
                "default": addresses[0] if addresses else None,
                "additional": addresses[1:],
            },
            "startup": self.startup,
            "environment": self.environment,
        }

    @property
    def primary_allocation(self) -> Allocation | None:
        # Uses prefetched allocations where the query made them.
        return next((a for a in self.allocations.all() if a.is_primary), None)

    @property
    def additional_allocations(self) -> list[Allocation]:
        return [a for a in self.allocations.all() if not a.is_primary]

    def clean(self) -> None:
        if not self.node_id or None in (self.cpu, self.memory_mb, self.disk_mb):
            return
        shortfalls = self.node.shortfalls(self.resources, excluding=self.pk)
        if shortfalls:
            raise ValidationError(shortfalls)
        if self.pk and self.allocations.exclude(node=self.node_id).exists():
            raise ValidationError(
                {
                    "node": "The server's allocations are on its current node; "
                    "free them before moving it."
                }
            )


def visible_to(user_id: int | None) -> models.QuerySet[Server]:
    """The servers a user may see and control: their own while they are active,
    and every one for an active admin."""
    if user_id is None:
        return Server.objects.none()
    users = get_user_model().objects
    admin = models.Exists(users.filter(pk=user_id, is_staff=True, is_active=True))
    return Server.objects.filter(Q(owner_id=user_id, owner__is_active=True) | Q(admin))


class SftpLogin(models.Model):
    """One SFTP password attempt, as a node's daemon asked the panel about it.

    The row keeps names, not keys, so that it still reads true once the server or
    the user is gone. It never holds the password.
    """

    class Result(models.TextChoices):
        # Stored before the attempt is checked, so that it counts at once.
        PENDING = "pending"
        GRANTED = "granted"
        REFUSED = "refused"
        THROTTLED = "throttled"

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    username = models.CharField(max_length=320)
    # The lowercased e-mail address after the server id, blank when the username
    # is malformed: failures count per e-mail address, whatever server id they name.
    email = models.CharField("e-mail address", max_length=320, blank=True)
    ip = models.GenericIPAddressField("from")
    node_name = models.CharField("node", max_length=100)
    server_public_id = models.CharField("server", max_length=16, blank=True)
    user_name = models.CharField("user", max_length=150, blank=True)
    result = models.CharField(max_length=9, choices=Result)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [
            models.Index(fields=["username", "created"]),
            models.Index(fields=["email", "created"]),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip}: {self.result}"
