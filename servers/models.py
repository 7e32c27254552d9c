import uuid

from django.conf import settings
from django.db import models


class Server(models.Model):
    class Status(models.TextChoices):
        INSTALLING = "installing"
        INSTALL_FAILED = "install_failed"
        OFFLINE = "offline"
        STARTING = "starting"
        RUNNING = "running"
        STOPPING = "stopping"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="servers"
    )
    node = models.ForeignKey("nodes.Node", models.PROTECT, related_name="servers")
    cpu = models.PositiveIntegerField("CPU (% of one core)")
    memory_mb = models.PositiveIntegerField("memory (MB)")
    disk_mb = models.PositiveIntegerField("disk (MB)")
    status = models.CharField(max_length=14, choices=Status, default=Status.INSTALLING)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
