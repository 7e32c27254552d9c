from django.urls import URLPattern, path

from nodes.consumers import NodeStatusConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/nodes/", NodeStatusConsumer.as_asgi()),
]
