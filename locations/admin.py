from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from locations.models import Location


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "country", "city", "node_count", "created"]
    list_filter = ["country"]
    search_fields = ["name", "city", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(node_count=Count("nodes"))

    @admin.display(description="nodes", ordering="node_count")
    def node_count(self, obj: Location) -> int:
        return obj.node_count
