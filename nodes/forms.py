from django import forms
from django.core.exceptions import ValidationError

from nodes.hosts import HostRefused, check_host, normalize_host
from nodes.models import MAX_DISK_GB, MAX_MEMORY_GB, MB_PER_GB, Node


class NodeEditForm(forms.ModelForm):
    """What may change on an existing node; host, port and protocol may not."""

    memory_gb = forms.IntegerField(
        label="Memory (GB)", min_value=1, max_value=MAX_MEMORY_GB
    )
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=1, max_value=MAX_DISK_GB)

    class Meta:
        model = Node
        fields = ["name", "location", "cpu_cores", "sftp_port", "upload_limit_mb"]
        help_texts = {
            "cpu_cores": "Cores the servers on this node may use in all.",
            "upload_limit_mb": "Largest file upload through the panel, 1 to 10240.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["location"].empty_label = "No location"
        if self.instance.pk:
            self.initial.setdefault("memory_gb", self.instance.memory_gb)
            self.initial.setdefault("disk_gb", self.instance.disk_gb)

    def clean(self) -> dict:
        data = super().clean()
        port = data.get("port", self.instance.port)
        if data.get("sftp_port") and data["sftp_port"] == port:
            self.add_error(
                "sftp_port",
                f"The SFTP port must differ from the daemon port ({port}).",
            )
        return data

    def _post_clean(self) -> None:
        # The model validates MB; the form speaks GB.
        for field in ("memory", "disk"):
            if self.cleaned_data.get(f"{field}_gb"):
                gb = self.cleaned_data[f"{field}_gb"]
                setattr(self.instance, f"{field}_mb", gb * MB_PER_GB)
        super()._post_clean()

    def _update_errors(self, errors: ValidationError) -> None:
        # The model names memory_mb and disk_mb; the form's fields are in GB.
        if hasattr(errors, "error_dict"):
            for field in ("memory", "disk"):
                if f"{field}_mb" in errors.error_dict:
                    errors.error_dict[f"{field}_gb"] = errors.error_dict.pop(
                        f"{field}_mb"
                    )
        super()._update_errors(errors)


class NodeForm(NodeEditForm):
    class Meta(NodeEditForm.Meta):
        fields = [
            "name",
            "location",
            "host",
            "port",
            "protocol",
            "cpu_cores",
            "sftp_port",
            "upload_limit_mb",
        ]
        help_texts = NodeEditForm.Meta.help_texts | {
            "host": "IP address or DNS name of the daemon, without scheme or path.",
            "protocol": "HTTPS behind a reverse proxy: the proxy terminates TLS.",
        }
        widgets = {"host": forms.TextInput(attrs={"autocomplete": "off"})}

    field_order = [
        "name",
        "location",
        "host",
        "port",
        "protocol",
        "cpu_cores",
        "memory_gb",
        "disk_gb",
        "sftp_port",
        "upload_limit_mb",
    ]

    def clean_host(self) -> str:
        value = self.cleaned_data["host"]
        try:
            check_host(value)
        except HostRefused as e:
            raise forms.ValidationError(str(e), code="host") from None
        return normalize_host(value)


class HostCheckForm(forms.Form):
    host = forms.CharField(max_length=253)
