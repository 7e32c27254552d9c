from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from servers.models import Server


@login_required
def index(request: HttpRequest) -> HttpResponse:
    servers = Server.objects.filter(owner=request.user).select_related("node__location")
    return render(request, "servers/index.html", {"servers": servers})
