#!/bin/sh
# panel: apply migrations, then serve the panel under Daphne (the heartbeat runs in
# it unless HEARTBEAT_ENABLED=False). daemon ARGS: run the development daemon.
# heartbeat: a heartbeat process of its own. Anything else runs as given.
set -e

case "${1:-panel}" in
    panel)
        # NB: panel containers that start together each migrate; after an upgrade,
        # start one first.
        python manage.py migrate --no-input
        exec daphne --bind 0.0.0.0 --port "${PORT:-8000}" \
            stellarpanel.asgi:application
        ;;
    heartbeat)
        exec python manage.py heartbeat
        ;;
    daemon)
        shift
        exec python -m devdaemon "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
