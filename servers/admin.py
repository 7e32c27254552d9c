from django.contrib import admin
from django.http import HttpRequest

from servers.models import Server, SftpLogin


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "public_id",
        "owner",
        "node",
        "status",
        "cpu",
        "memory_mb",
        "disk_mb",
        "created",
    ]
    list_filter = ["status", "node"]
    search_fields = [
        "name",
        "public_id",
        "owner__username",
        "owner__email",
        "node__name",
    ]
    list_select_related = ["owner", "node"]
    raw_id_fields = ["owner"]


@admin.register(SftpLogin)
class SftpLoginAdmin(admin.ModelAdmin):
    """A record of what happened: read it, prune it, never rewrite it."""

    list_display = ["created", "result", "username", "user_name", "node_name", "ip"]
    list_filter = ["result", "node_name"]
    search_fields = ["username", "user_name", "server_public_id", "ip"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
