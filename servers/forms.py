from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from nodes.models import Allocation, Node
from servers.models import Server


def _node_label(node: Node) -> str:
    free = node.free()
    state = "" if node.is_online else " (offline)"
    return (
        f"{node.name}{state}: {free.cpu} % CPU, {free.memory_mb} MB memory, "
        f"{free.disk_mb} MB disk free"
    )


def node_choices(nodes: QuerySet) -> list:
    """Nodes grouped by location, each labelled with what it has free."""
    groups: dict[str, list] = {}
    for node in nodes:
        place = node.location.name if node.location else "No location"
        groups.setdefault(place, []).append((node.pk, _node_label(node)))
    return [("", "Choose a node")] + sorted(groups.items())


class AllocationChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, allocation: Allocation) -> str:
        alias = f" ({allocation.alias})" if allocation.alias else ""
        return f"{allocation}{alias}"


class AllocationsChoiceField(forms.ModelMultipleChoiceField):
    label_from_instance = AllocationChoiceField.label_from_instance


class ServerForm(forms.ModelForm):
    """Limits and allocations of a server; with a node field when creating."""

    allocation = AllocationChoiceField(
        Allocation.objects.none(),
        label="Primary allocation",
        help_text="The address players connect to.",
    )
    additional_allocations = AllocationsChoiceField(
        Allocation.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 5}),
        help_text="More ports for the server, such as a query or voice port.",
    )

    class Meta:
        model = Server
        fields = ["name", "description", "owner", "cpu", "memory_mb", "disk_mb"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "memory_mb": "Memory in MB: 1024 is 1 GB.",
            "disk_mb": "Disk in MB: 10240 is 10 GB.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = (
            get_user_model().objects.filter(is_active=True).order_by("username")
        )
        if self.instance.pk:
            self.chosen_node = self.instance.node
            mine = list(self.instance.allocations.all())
            primary = next((a for a in mine if a.is_primary), None)
            self.initial.setdefault("allocation", primary.pk if primary else None)
            self.initial.setdefault(
                "additional_allocations", [a.pk for a in mine if not a.is_primary]
            )
        self.offer_allocations()

    def offer_allocations(self) -> None:
        """Offer the node's free allocations, and the server's own ones."""
        node = getattr(self, "chosen_node", None)
        if node is None:
            return
        offered = Allocation.objects.filter(node=node, server__isnull=True)
        if self.instance.pk:
            offered = offered | Allocation.objects.filter(server=self.instance)
        self.fields["allocation"].queryset = offered
        self.fields["additional_allocations"].queryset = offered

    def clean(self) -> dict:
        data = super().clean()
        primary = data.get("allocation")
        additional = data.get("additional_allocations") or []
        if primary and primary in additional:
            self.add_error(
                "additional_allocations",
                f"{primary} is already the primary allocation.",
            )
        return data

    def allocations(self) -> list[Allocation]:
        """The chosen allocations, primary first."""
        return [
            self.cleaned_data["allocation"],
            *self.cleaned_data.get("additional_allocations", []),
        ]


class ServerCreateForm(ServerForm):
    node = forms.TypedChoiceField(coerce=int, label="Node")

    field_order = [
        "name",
        "description",
        "owner",
        "node",
        "allocation",
        "additional_allocations",
        "cpu",
        "memory_mb",
        "disk_mb",
    ]

    def __init__(self, *args, **kwargs) -> None:
        nodes = Node.objects.with_usage().select_related("location")
        self.nodes = {node.pk: node for node in nodes}
        super().__init__(*args, **kwargs)
        self.fields["node"].choices = node_choices(self.nodes.values())
        self.fields["node"].widget.attrs.update(
            {
                "hx-get": "allocations/",
                "hx-target": "#allocation-fields",
                "hx-select": "#allocation-fields",
                "hx-swap": "outerHTML",
                "hx-include": "this",
            }
        )
        try:
            chosen = int(self.data.get("node") or self.initial.get("node") or 0)
        except ValueError:
            chosen = 0
        self.chosen_node = self.nodes.get(chosen)
        self.offer_allocations()

    def clean_node(self) -> int:
        node = self.nodes.get(self.cleaned_data["node"])
        if node is None:
            raise forms.ValidationError("Choose one of the nodes listed.")
        if not node.is_online:
            raise forms.ValidationError(
                f"Node {node.name} is offline: servers can only be created on a "
                "node whose daemon answers."
            )
        self.instance.node = node
        return node.pk
