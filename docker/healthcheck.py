"""The container's health check: the panel's /healthz answers "ok".

It asks as PANEL_URL's host, which the panel always answers to, over plain HTTP
inside the container (the health check is exempt from the HTTPS redirect).
"""

import os
import sys
import urllib.request
from urllib.parse import urlsplit


def main() -> int:
    host = urlsplit(os.getenv("PANEL_URL") or "http://127.0.0.1:8000").hostname
    host = f"[{host}]" if host and ":" in host else host
    port = os.getenv("PORT") or "8000"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz", headers={"Host": host or "127.0.0.1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = response.read()
    except OSError as error:
        print(f"healthz: {error}", file=sys.stderr)
        return 1
    return 0 if answer == b"ok" else 1


if __name__ == "__main__":
    sys.exit(main())
