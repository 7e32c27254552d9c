"""`python -m devdaemon --config node.toml`: run the development daemon."""

import argparse
import logging
import ssl
import sys
from pathlib import Path

from devdaemon.config import Config, ConfigError, load_config

logger = logging.getLogger("devdaemon")

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
SHUTDOWN_TIMEOUT_S = 15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devdaemon",
        description="StellarPanel's development daemon.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the TOML file")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        config = load_config(args.config)
        ssl_context = tls(config)
    except ConfigError as error:
        print(f"devdaemon: {args.config}: {error}", file=sys.stderr)
        return 2
    # Imported only now: a config error is answered before aiohttp loads, at once.
    from aiohttp import web

    from devdaemon.api import make_app
    from devdaemon.daemon import Daemon
    from devdaemon.sftp import SFTPUnavailable, serve_sftp

    daemon = Daemon(config)
    daemon.load()
    app = make_app(daemon)
    serve_sftp(app, daemon)
    # A line per request would be a line per heartbeat; DEBUG shows them.
    access_log = logging.getLogger("aiohttp.access")
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            ssl_context=ssl_context,
            print=announce,
            access_log=access_log if args.log_level == "DEBUG" else None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
    except SFTPUnavailable as error:
        print(f"devdaemon: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"devdaemon: cannot listen on {config.host}:{config.port}: {error}",
            file=sys.stderr,
        )
        return 1
    logger.info("stopped")
    return 0


def announce(text: str) -> None:
    """aiohttp's "Running on ..." banner, as one log line."""
    logger.info("%s", text.splitlines()[0].strip("= "))


def tls(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"[api] tls_cert / tls_key cannot be loaded: {error}"
        ) from None
    return context


if __name__ == "__main__":
    sys.exit(main())
