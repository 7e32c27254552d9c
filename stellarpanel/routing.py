from django.urls import URLPattern

# Each app adds its consumers here as it gains them.
websocket_urlpatterns: list[URLPattern] = []
