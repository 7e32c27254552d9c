import ipaddress

from django import forms
from django.core.exceptions import ValidationError

from nodes.hosts import HostRefused, check_host, normalize_host
from nodes.models import MAX_DISK_GB, MAX_MEMORY_GB, MB_PER_GB, Allocation, Node
from nodes.ports import PortListError, parse_ports


def checked_host(value: str) -> str:
    """A host that the host policy accepts, as stored; else a form error."""
    try:
        check_host(value)
    except HostRefused as e:
        raise forms.ValidationError(str(e), code="host") from None
    return normalize_host(value)


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
        return checked_host(self.cleaned_data["host"])


class HostCheckForm(forms.Form):
    host = forms.CharField(max_length=253)


class AllocationCreateForm(forms.Form):
    """Many allocations at once: one IP address, a list of ports and ranges."""

    # NB: this is the address players connect to, not one the panel connects to,
    # so the daemon's SSRF host policy does not apply.
    ip = forms.CharField(
        label="IP address",
        max_length=45,
        help_text="The address players connect to.",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "list": "node-ips"}
        ),
    )
    ports = forms.CharField(
        max_length=40000,
        help_text="Ports and ranges, such as 25565, 25570-25580.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    alias = forms.CharField(
        max_length=253,
        required=False,
        help_text="Shown instead of the IP, such as a DNS name.",
    )
    notes = forms.CharField(max_length=256, required=False)

    def clean_ip(self) -> str:
        value = self.cleaned_data["ip"]
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValidationError(
                f"'{value}' is not an IPv4 or IPv6 address.", code="invalid"
            ) from None
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.version == 6 and address.scope_id:
            raise ValidationError(
                "Players cannot use a zone index (%…); leave it out.", code="zone"
            )
        if address.is_unspecified:
            raise ValidationError(
                f"{address} stands for every address of the machine; give the one "
                "players connect to.",
                code="unspecified",
            )
        if address.is_multicast:
            raise ValidationError(
                f"{address} is a multicast address; players cannot connect to it.",
                code="multicast",
            )
        return str(address)

    def clean_ports(self) -> list[int]:
        try:
            return parse_ports(self.cleaned_data["ports"])
        except PortListError as e:
            raise ValidationError(str(e), code="ports") from None


class AllocationDeleteForm(forms.Form):
    """Which of a node's allocations to delete: the ticked ones, or all free ones."""

    allocation = forms.ModelMultipleChoiceField(
        queryset=Allocation.objects.none(), required=False
    )
    all_free = forms.BooleanField(required=False)

    def __init__(self, node: Node, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Another node's allocations are not choices: naming one refuses the form.
        self.fields["allocation"].queryset = node.allocations.all()
