"""The remote API's routes, under /api/remote/; anything else is a JSON 404."""

from django.urls import path, re_path

from nodes import remote

app_name = "remote"
urlpatterns = [
    path("servers", remote.servers, name="servers"),
    path("servers/<str:server_id>/status", remote.server_status, name="status"),
    path("servers/<str:server_id>/install", remote.server_install, name="install"),
    path("sftp/auth", remote.sftp_auth, name="sftp_auth"),
    re_path(r"", remote.unknown_route),
]
