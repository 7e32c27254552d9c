"""The panel's ASGI entry point, served by Daphne.

HTTP goes to Django (static files included, so one process serves the whole panel),
once its body has passed the limits Daphne is made to keep (stellarpanel.bodylimit);
WebSocket connections go through Channels' router, behind the session (read once,
stellarpanel.websockets) and authentication middleware and an origin check.
Importing it starts the process's heartbeat scheduler, unless HEARTBEAT_ENABLED is
False.
"""

import gc
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stellarpanel.settings")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

try:
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
except ImproperlyConfigured as e:
    sys.exit(f"StellarPanel cannot start: {e}")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from stellarpanel import bodylimit, scheduler  # noqa: E402
from stellarpanel.routing import websocket_urlpatterns  # noqa: E402
from stellarpanel.websockets import WebSocketAuthStack  # noqa: E402

bodylimit.install()
application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_application),
        "websocket": AllowedHostsOriginValidator(
            WebSocketAuthStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

if settings.HEARTBEAT_ENABLED:
    scheduler.start()

# What is loaded by now lives as long as the process. Frozen, the collector no
# longer walks it on every full collection, which otherwise stalls a busy console
# for tens of milliseconds.
gc.freeze()
