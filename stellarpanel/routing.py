from django.urls import URLPattern, URLResolver, re_path

from nodes.routing import websocket_urlpatterns as nodes_urlpatterns
from servers.consumers import ConsoleConsumer

# Each app adds its consumers here as it gains them.
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    *nodes_urlpatterns,
    re_path(r"^ws/servers/(?P<public_id>[a-z0-9]{1,16})/$", ConsoleConsumer.as_asgi()),
]
