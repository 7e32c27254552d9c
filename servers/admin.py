from django.contrib import admin

from servers.models import Server


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
