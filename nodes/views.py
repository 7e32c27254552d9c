from urllib.parse import quote, urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, F, ProtectedError, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from nodes.credentials import CredentialsUnreadable
from nodes.forms import (
    AllocationCreateForm,
    AllocationDeleteForm,
    HostCheckForm,
    NodeEditForm,
    NodeForm,
)
from nodes.hosts import HostRefused, check_host
from nodes.models import Allocation, Node
from nodes.ports import format_ports
from servers.models import QUICK_ACTIONS
from stellarpanel.auth import admin_required
from stellarpanel.dbrules import refusal

# The session key that lets the credentials page show a node's token once.
REVEAL_KEY = "nodes.reveal_token"


def _reveal_once(request: HttpRequest, node: Node) -> None:
    request.session[REVEAL_KEY] = node.pk


@admin_required
def index(request: HttpRequest) -> HttpResponse:
    nodes = (
        Node.objects.with_usage()
        .select_related("location")
        .order_by(F("location__name").asc(nulls_last=True), "name")
    )
    return render(request, "nodes/index.html", {"nodes": nodes})


@admin_required
def create(request: HttpRequest) -> HttpResponse:
    form = NodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        node = form.save(commit=False)
        node.set_new_token()
        node.save()
        _reveal_once(request, node)
        messages.success(request, f"Node {node.name} was added.")
        return redirect("nodes:credentials", pk=node.pk)
    return render(request, "nodes/form.html", {"form": form})


@admin_required
@require_POST
def check_host_view(request: HttpRequest) -> HttpResponse:
    """The host field's live check: says where a host resolves, or why it cannot."""
    form = HostCheckForm(request.POST)
    ctx: dict = {}
    if form.is_valid():
        try:
            ctx["addresses"] = check_host(form.cleaned_data["host"])
        except HostRefused as e:
            ctx["refusal"] = str(e)
    return render(request, "nodes/form.html#host_check", ctx)


@admin_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _node_page(request, pk)


@admin_required
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    form = NodeEditForm(request.POST or None, instance=node)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                form.save()
        except IntegrityError as e:
            # A server grew between the form's check and the save.
            form.add_error(None, refusal(e) or "The node could not be saved.")
        else:
            messages.success(request, f"Node {node.name} was saved.")
            return redirect("nodes:detail", pk=node.pk)
    return render(request, "nodes/form.html", {"form": form, "node": node})


@admin_required
def credentials(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    ctx: dict = {"node": node}
    if request.session.pop(REVEAL_KEY, None) == node.pk:
        try:
            ctx["token"] = node.daemon_token()
        except CredentialsUnreadable as e:
            messages.error(request, f"The token of {node.name} is unreadable: {e}")
        else:
            ctx["config"] = node.daemon_config(ctx["token"])
            ctx["config_href"] = "data:application/toml;charset=utf-8," + quote(
                ctx["config"]
            )
    response = render(request, "nodes/credentials.html", ctx)
    # The token must not outlive this response in a cache or the back button.
    add_never_cache_headers(response)
    response["Cache-Control"] += ", no-store"
    return response


@admin_required
@require_POST
def rotate_token(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    node.rotate_token()
    _reveal_once(request, node)
    messages.warning(
        request,
        f"Node {node.name} has a new token. Its daemon is refused until its "
        "configuration file has the new one.",
    )
    return redirect("nodes:credentials", pk=node.pk)


@admin_required
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=pk)
    blockers = node.blockers()
    if request.method == "POST" and not blockers:
        try:
            with transaction.atomic():
                node.delete()
        except (IntegrityError, ProtectedError):
            # A server arrived between the check above and the delete.
            blockers = node.blockers()
        else:
            messages.success(
                request,
                f"Node {node.name} was deleted. Its daemon keeps running until you "
                "stop it on the machine.",
            )
            return redirect("nodes:index")
    return render(request, "nodes/delete.html", {"node": node, "blockers": blockers})


# The allocation list's filters; without one (or with an unknown one) it shows all.
ALLOCATION_FILTERS = {
    "free": Q(server__isnull=True),
    "assigned": Q(server__isnull=False),
}
ALLOCATIONS_PER_PAGE = 100
# How many refused allocations a message names before it counts the rest.
NAMED_IN_A_MESSAGE = 5


def _allocation_filter(value: str | None) -> str:
    return value if value in ALLOCATION_FILTERS else "all"


def _filter_query(shown: str) -> str:
    return "" if shown == "all" else f"?{urlencode({'filter': shown})}"


def _allocations_url(node: Node, shown: str = "all") -> str:
    page = reverse("nodes:detail", args=[node.pk])
    return f"{page}{_filter_query(shown)}#allocations"


def _allocation_section(
    request: HttpRequest, node: Node, form: AllocationCreateForm | None = None
) -> dict:
    """The node page's allocations: the create form, the filters and one page."""
    shown = _allocation_filter(request.GET.get("filter"))
    allocations = node.allocations.select_related("server")
    if shown != "all":
        allocations = allocations.filter(ALLOCATION_FILTERS[shown])
    page = Paginator(allocations, ALLOCATIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )

    counts = node.allocations.aggregate(
        all=Count("pk"), free=Count("pk", filter=ALLOCATION_FILTERS["free"])
    )
    counts["assigned"] = counts["all"] - counts["free"]
    filters = [
        {
            "name": name,
            "label": label,
            "count": counts[name],
            "query": _filter_query(name),
        }
        for name, label in (("all", "All"), ("free", "Free"), ("assigned", "Assigned"))
    ]
    return {
        "form": form or AllocationCreateForm(),
        "ips": node.allocations.order_by("ip").values_list("ip", flat=True).distinct(),
        "filter": shown,
        "filters": filters,
        "counts": counts,
        "page": page,
        "page_has_free": any(a.server_id is None for a in page.object_list),
        "page_range": list(page.paginator.get_elided_page_range(page.number)),
        # What page links keep: the filter.
        "query": {} if shown == "all" else {"filter": shown},
    }


def _node_page(
    request: HttpRequest, pk: int, form: AllocationCreateForm | None = None
) -> HttpResponse:
    """The node page; with the allocation form's errors and input when given."""
    node = get_object_or_404(
        Node.objects.with_usage().select_related("location"), pk=pk
    )
    servers = node.servers.select_related("owner").prefetch_related("allocations")
    ctx = {
        "node": node,
        "servers": servers,
        "quick_actions": QUICK_ACTIONS,
        "allocations": _allocation_section(request, node, form),
    }
    return render(request, "nodes/detail.html", ctx)


def _counted(number: int) -> str:
    return f"{number} allocation{'' if number == 1 else 's'}"


def _add_allocations(request: HttpRequest, node: Node, data: dict) -> None:
    """Add an allocation for each new port; say which ports were there already."""
    ip, ports = data["ip"], data["ports"]
    with transaction.atomic():
        present = node.allocations.filter(ip=ip, port__range=(ports[0], ports[-1]))
        existing = set(present.values_list("port", flat=True)) & set(ports)
        Allocation.objects.bulk_create(
            Allocation(
                node=node, ip=ip, port=port, alias=data["alias"], notes=data["notes"]
            )
            for port in ports
            if port not in existing
        )

    added = len(ports) - len(existing)
    if not existing:
        messages.success(request, f"{_counted(added)} added on {ip}.")
    elif not added:
        messages.warning(
            request,
            f"Every port already existed on {ip} ({format_ports(existing)}); "
            "nothing was added.",
        )
    else:
        messages.warning(
            request,
            f"{format_ports(existing)} already existed on {ip}; "
            f"{_counted(added)} added.",
        )


@admin_required
@require_http_methods(["GET", "POST"])
def allocations(request: HttpRequest, pk: int) -> HttpResponse:
    """The allocation list for htmx (GET), or many new allocations at once (POST)."""
    node = get_object_or_404(Node, pk=pk)
    if request.method == "POST":
        form = AllocationCreateForm(request.POST)
        if form.is_valid():
            try:
                _add_allocations(request, node, form.cleaned_data)
            except IntegrityError:
                # Someone else added some of the same ports meanwhile.
                form.add_error(
                    None,
                    "Some of these ports were added meanwhile; nothing was added. "
                    "Send the form again to add the others.",
                )
            else:
                return redirect(_allocations_url(node))
        return _node_page(request, node.pk, form)

    if request.htmx:
        ctx = {"node": node, "allocations": _allocation_section(request, node)}
        response = render(request, "nodes/allocations.html#allocation_list", ctx)
    else:
        # Without htmx, the list lives on the node page.
        query = f"?{request.GET.urlencode()}" if request.GET else ""
        response = redirect(f"{reverse('nodes:detail', args=[pk])}{query}#allocations")
    patch_vary_headers(response, ["HX-Request"])
    return response


def _assigned_among(chosen: QuerySet[Allocation]) -> list[Allocation]:
    return list(chosen.filter(server__isnull=False).select_related("server"))


def _refuse_assigned(request: HttpRequest, assigned: list[Allocation]) -> None:
    held = [f"{a} is assigned to {a.server.name}" for a in assigned]
    if len(held) > NAMED_IN_A_MESSAGE:
        more = len(held) - NAMED_IN_A_MESSAGE
        held = [*held[:NAMED_IN_A_MESSAGE], f"{more} more are assigned too"]
    messages.error(
        request,
        f"Nothing was deleted: {'; '.join(held)}. Free them from their servers first.",
    )


@admin_required
@require_POST
def delete_allocations(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete the ticked allocations, or all free ones; all or none of them."""
    node = get_object_or_404(Node, pk=pk)
    shown = _allocation_filter(request.POST.get("filter"))
    back = redirect(_allocations_url(node, shown))
    form = AllocationDeleteForm(node, request.POST)
    if not form.is_valid():
        messages.error(
            request,
            "Nothing was deleted: the selection names allocations this node does "
            "not have (any more).",
        )
        return back

    if form.cleaned_data["all_free"]:
        chosen = node.allocations.filter(server__isnull=True)
    elif form.cleaned_data["allocation"]:
        chosen = form.cleaned_data["allocation"]
    else:
        messages.info(request, "Tick the allocations to delete first.")
        return back
    assigned = _assigned_among(chosen)
    if assigned:
        _refuse_assigned(request, assigned)
        return back

    try:
        with transaction.atomic():
            deleted, _ = chosen.delete()
    except IntegrityError as e:
        # One was assigned between the check above and the delete.
        messages.error(request, refusal(e) or "The allocations could not be deleted.")
        return back
    if deleted:
        messages.success(request, f"{_counted(deleted)} deleted.")
    else:
        messages.info(request, "There were no free allocations to delete.")
    return back
