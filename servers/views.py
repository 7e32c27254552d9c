from contextlib import suppress

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from nodes.daemon import POWER_ACTIONS, Daemon, DaemonError
from nodes.models import Allocation, Node
from servers.forms import ServerCreateForm, ServerForm
from servers.models import POWER_BUTTONS, Server, SftpLogin
from stellarpanel.auth import admin_required
from stellarpanel.dbrules import refusal

SFTP_LOGINS_PER_PAGE = 50


def _servers() -> QuerySet:
    return Server.objects.select_related("owner", "node__location").prefetch_related(
        Prefetch("allocations", queryset=Allocation.objects.order_by("-is_primary"))
    )


def server_for(request: HttpRequest, public_id: str) -> Server:
    """The server, if the user may see it: its owner and admins; 404 otherwise."""
    servers = _servers()
    if not request.user.is_staff:
        servers = servers.filter(owner=request.user)
    return get_object_or_404(servers, public_id=public_id)


def daemon_trouble(node: Node, error: DaemonError) -> str:
    """A sentence for a daemon's refusal or silence."""
    if error.category in ("conflict", "not_found", "bad_request", "forbidden"):
        return f"The daemon on node {node.name} refused: {error.message}"
    return f"The daemon on node {node.name} could not be reached: {error.message}"


class AllocationTaken(Exception):
    """An allocation the form offered was assigned elsewhere before the save."""


def _assign(server: Server, allocations: list[Allocation]) -> None:
    """Give the server exactly these allocations, the first one primary."""
    chosen = [a.pk for a in allocations]
    Allocation.objects.filter(server=server).exclude(pk__in=chosen).update(
        server=None, is_primary=False
    )
    Allocation.objects.filter(server=server).update(is_primary=False)
    Allocation.objects.filter(pk__in=chosen, server__isnull=True).update(server=server)
    if Allocation.objects.filter(pk__in=chosen, server=server).count() != len(chosen):
        raise AllocationTaken
    Allocation.objects.filter(pk=chosen[0]).update(is_primary=True)


def _push(server: Server, creating: bool) -> None:
    """Make the server on its daemon as it is in the panel, or raise DaemonError."""
    daemon = Daemon(server.node)
    config = server.daemon_config()
    if not creating:
        daemon.sync(server.public_id, config)
        return
    daemon.create_server(config)
    try:
        daemon.install(server.public_id)
    except DaemonError:
        # Leave nothing half-made on the daemon either.
        with suppress(DaemonError):
            daemon.delete_server(server.public_id)
        raise


def _save(form: ServerForm) -> Server | None:
    """Save the server, its allocations and its daemon's copy at once, or say why not.

    The daemon is called inside the transaction: if it refuses, the panel keeps
    nothing. NB: on PostgreSQL the capacity trigger holds the node row until the
    daemon answers, so creations on one node wait for each other.
    """
    creating = form.instance.pk is None
    try:
        with transaction.atomic():
            server = form.save()
            _assign(server, form.allocations())
            _push(_servers().get(pk=server.pk), creating)
    except (AllocationTaken, IntegrityError, DaemonError) as e:
        if creating:
            form.instance.pk = None
        _explain(form, e)
    else:
        return server
    return None


def _explain(form: ServerForm, error: Exception) -> None:
    if isinstance(error, DaemonError):
        form.add_error(None, daemon_trouble(form.instance.node, error))
        return
    if isinstance(error, AllocationTaken):
        form.add_error(
            None, "An allocation was taken by another server meanwhile; choose again."
        )
        return
    # The database saw a server the form's check could not (a race).
    node = form.instance.node
    shortfalls = node.shortfalls(form.instance.resources, form.instance.pk)
    for field, sentence in shortfalls.items():
        form.add_error(field, sentence)
    if not shortfalls:
        form.add_error(None, refusal(error) or "The server could not be saved.")


@login_required
def index(request: HttpRequest) -> HttpResponse:
    servers = _servers().filter(owner=request.user)
    return render(request, "servers/index.html", {"servers": servers})


@login_required
def detail(request: HttpRequest, public_id: str) -> HttpResponse:
    server = server_for(request, public_id)
    ctx = {
        "server": server,
        "power_actions": POWER_BUTTONS,
        "sftp_username": f"{server.public_id}.{request.user.email}",
    }
    if request.user.is_staff:
        logins = SftpLogin.objects.filter(server_public_id=server.public_id)
        ctx["sftp_logins"] = logins[:5]
    return render(request, "servers/detail.html", ctx)


@admin_required
def sftp_logins(request: HttpRequest) -> HttpResponse:
    """Every SFTP login attempt, newest first, filtered by result and by a search."""
    logins = SftpLogin.objects.all()
    result = request.GET.get("result", "")
    if result not in SftpLogin.Result.values:
        result = ""
    if result:
        logins = logins.filter(result=result)
    server = request.GET.get("server", "").strip()
    if server:
        logins = logins.filter(server_public_id=server)
    search = request.GET.get("q", "").strip()
    if search:
        logins = logins.filter(
            Q(username__icontains=search)
            | Q(user_name__icontains=search)
            | Q(ip__startswith=search)
            | Q(node_name__icontains=search)
        )
    page = Paginator(logins, SFTP_LOGINS_PER_PAGE).get_page(request.GET.get("page"))
    shown = {"result": result, "server": server, "q": search}
    ctx = {
        "page": page,
        "page_range": list(page.paginator.get_elided_page_range(page.number)),
        "results": SftpLogin.Result.choices,
        "result": result,
        "server": server,
        "search": search,
        # What page links keep: the filters in use.
        "query": {name: value for name, value in shown.items() if value},
    }
    return render(request, "servers/sftp_logins.html", ctx)


@admin_required
def admin_index(request: HttpRequest) -> HttpResponse:
    servers = _servers().order_by("node__name", "name")
    return render(request, "servers/admin_index.html", {"servers": servers})


@admin_required
def create(request: HttpRequest) -> HttpResponse:
    form = ServerCreateForm(request.POST or None, initial=request.GET.dict())
    if request.method == "POST" and form.is_valid():
        server = _save(form)
        if server is not None:
            messages.success(request, f"Server {server.name} was created.")
            return redirect("servers:detail", public_id=server.public_id)
    return render(request, "servers/form.html", {"form": form})


@admin_required
def create_allocations(request: HttpRequest) -> HttpResponse:
    """The allocation fields for the node chosen on the create form (htmx)."""
    form = ServerCreateForm(initial={"node": request.GET.get("node")})
    return render(request, "servers/form.html#allocation_fields", {"form": form})


@admin_required
def edit(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_object_or_404(
        Server.objects.select_related("node"), public_id=public_id
    )
    form = ServerForm(request.POST or None, instance=server)
    if request.method == "POST" and form.is_valid() and _save(form) is not None:
        messages.success(request, f"Server {server.name} was saved.")
        return redirect("servers:detail", public_id=server.public_id)
    return render(request, "servers/form.html", {"form": form, "server": server})


@admin_required
def delete(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_object_or_404(
        Server.objects.select_related("node"), public_id=public_id
    )
    trouble = None
    if request.method == "POST":
        try:
            Daemon(server.node).delete_server(server.public_id)
        except DaemonError as e:
            if e.category != "not_found" and not request.POST.get("force"):
                trouble = daemon_trouble(server.node, e)
        if trouble is None:
            server.delete()
            messages.success(
                request,
                f"Server {server.name} was deleted and its allocations are free again.",
            )
            return redirect("nodes:detail", pk=server.node.pk)
    return render(
        request, "servers/delete.html", {"server": server, "trouble": trouble}
    )


@admin_required
@require_POST
def reinstall(request: HttpRequest, public_id: str) -> HttpResponse:
    """Run the server's install again on its daemon; its files are rewritten."""
    server = get_object_or_404(
        Server.objects.select_related("node"), public_id=public_id
    )
    try:
        Daemon(server.node).install(server.public_id)
    except DaemonError as e:
        messages.error(request, daemon_trouble(server.node, e))
    else:
        server.status = Server.Status.INSTALLING
        server.save(update_fields=["status"])
        messages.success(request, f"Installing {server.name} again.")
    return redirect("servers:detail", public_id=public_id)


@login_required
@require_POST
def power(request: HttpRequest, public_id: str) -> HttpResponse:
    """Start, stop, restart or kill a server: for its owner and admins."""
    server = server_for(request, public_id)
    action = request.POST.get("action", "")
    if action not in POWER_ACTIONS:
        messages.error(request, "Choose start, stop, restart or kill.")
    elif not server.node.is_online:
        messages.error(
            request,
            f"Node {server.node.name} is offline: power actions wait until its "
            "daemon answers.",
        )
    else:
        try:
            Daemon(server.node).power(server.public_id, action)
        except DaemonError as e:
            messages.error(request, daemon_trouble(server.node, e))
        else:
            messages.success(request, f"Sent {action} to {server.name}.")
    return redirect(_next_or(request, reverse("servers:detail", args=[public_id])))


def _next_or(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
