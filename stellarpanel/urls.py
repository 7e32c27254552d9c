from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from servers.urls import admin_urlpatterns as server_admin_urls
from stellarpanel.health import healthz

admin.site.site_header = "StellarPanel data"
admin.site.site_title = "StellarPanel data"
admin.site.index_title = "Raw data fixes"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="servers:index"), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("servers/", include("servers.urls")),
    path("admin/servers/", include(server_admin_urls)),
    path("admin/nodes/", include("nodes.urls")),
    path("admin/locations/", include("locations.urls")),
    path("api/remote/", include("nodes.remote_urls")),
    path("django-admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
