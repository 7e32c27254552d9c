from django import forms
from django.contrib import admin
from django.http import HttpRequest

from nodes.forms import checked_host
from nodes.models import Allocation, Node


class NodeAdminForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = [
            "name",
            "location",
            "host",
            "port",
            "protocol",
            "cpu_cores",
            "memory_mb",
            "disk_mb",
            "sftp_port",
            "upload_limit_mb",
        ]

    def clean_host(self) -> str:
        return checked_host(self.cleaned_data["host"])


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    form = NodeAdminForm
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
    # The token never appears here: it is shown once on the panel's credentials
    # page, and rotated there.
    readonly_fields = ["token_id", "status", "latency_ms", "last_heartbeat", "created"]

    def save_model(
        self, request: HttpRequest, obj: Node, form: forms.ModelForm, change: bool
    ) -> None:
        if not obj.token_id:
            obj.set_new_token()
        super().save_model(request, obj, form, change)


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "node", "alias", "server", "notes"]
    list_filter = ["node", ("server", admin.EmptyFieldListFilter)]
    search_fields = ["ip", "port", "alias", "notes", "node__name", "server__name"]
    list_select_related = ["node", "server"]
    raw_id_fields = ["server"]
