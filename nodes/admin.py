from django.contrib import admin

from nodes.models import Allocation, Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "location",
        "host",
        "port",
        "protocol",
        "status",
        "latency_ms",
        "cpu_cores",
        "memory_mb",
        "disk_mb",
        "last_heartbeat",
    ]
    list_filter = ["status", "protocol", "location"]
    search_fields = ["name", "host", "token_id"]
    list_select_related = ["location"]
    # The encrypted token never appears here; rotate it from the node's page.
    readonly_fields = ["token_id", "status", "latency_ms", "last_heartbeat", "created"]


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "node", "alias", "server", "notes"]
    list_filter = ["node", ("server", admin.EmptyFieldListFilter)]
    search_fields = ["ip", "port", "alias", "notes", "node__name", "server__name"]
    list_select_related = ["node", "server"]
    raw_id_fields = ["server"]
