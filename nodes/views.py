from urllib.parse import quote

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from nodes.credentials import CredentialsUnreadable
from nodes.forms import HostCheckForm, NodeEditForm, NodeForm
from nodes.hosts import HostRefused, check_host
from nodes.models import Node
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
    node = get_object_or_404(
        Node.objects.with_usage().select_related("location"), pk=pk
    )
    servers = node.servers.select_related("owner").prefetch_related("allocations")
    ctx = {
        "node": node,
        "servers": servers,
        "allocations": node.allocations.select_related("server"),
    }
    return render(request, "nodes/detail.html", ctx)


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
