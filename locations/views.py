from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import Count, ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from locations.forms import LocationForm
from locations.models import Location
from stellarpanel.auth import admin_required


@admin_required
def index(request: HttpRequest) -> HttpResponse:
    locations = Location.objects.annotate(node_count=Count("nodes"))
    return render(request, "locations/index.html", {"locations": locations})


@admin_required
def create(request: HttpRequest) -> HttpResponse:
    form = LocationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        location = form.save()
        messages.success(request, f"Location {location.name} was added.")
        return redirect("locations:index")
    return render(request, "locations/form.html", {"form": form})


@admin_required
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    location = get_object_or_404(Location, pk=pk)
    form = LocationForm(request.POST or None, instance=location)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Location {location.name} was saved.")
        return redirect("locations:index")
    return render(request, "locations/form.html", {"form": form, "location": location})


@admin_required
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    location = get_object_or_404(Location, pk=pk)
    nodes = list(location.nodes.values_list("name", flat=True))
    if request.method == "POST" and not nodes:
        try:
            with transaction.atomic():
                location.delete()
        except (IntegrityError, ProtectedError):
            # A node was added between the check above and the delete.
            nodes = list(location.nodes.values_list("name", flat=True))
        else:
            messages.success(request, f"Location {location.name} was deleted.")
            return redirect("locations:index")
    ctx = {"location": location, "nodes": nodes}
    return render(request, "locations/delete.html", ctx)
