"""StellarPanel settings, read from the environment.

Every variable is listed, with what it does, in `.env.example` and the README. The
defaults suit development on one machine: a SQLite file and the in-memory channel
layer. With DEBUG=False, SECRET_KEY and ENCRYPTION_KEY must be set.
"""

import base64
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from stellarpanel.environment import (
    channel_layer_from_url,
    database_from_url,
    envbool,
    envint,
    envlist,
    envsecret,
    envstr,
    log_level,
    networks_from_list,
    panel_url,
    time_zone,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", True)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG=False it is required: set it to a "
            "long random string (or SECRET_KEY_FILE to a file holding one), for "
            "example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = "development-only-secret-key-do-not-use-in-production"

# Fernet keys that encrypt daemon tokens at rest. The first one encrypts; all of
# them decrypt, so a key can be rotated by putting the new one first.
ENCRYPTION_KEYS = [
    k.strip() for k in envsecret("ENCRYPTION_KEY").split(",") if k.strip()
]
if not ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEY is not set. With DEBUG=False it is required: create one "
            "with `uv run manage.py generate_encryption_key` and keep it safe; "
            "without it the stored daemon tokens cannot be read."
        )
    digest = hashlib.sha256(b"stellarpanel-encryption:" + SECRET_KEY.encode()).digest()
    ENCRYPTION_KEYS = [base64.urlsafe_b64encode(digest).decode()]
for _key in ENCRYPTION_KEYS:
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEY holds a value that is not a Fernet key (32 bytes, "
            "base64url): create one with `uv run manage.py generate_encryption_key`."
        ) from None

PANEL_URL = panel_url("PANEL_URL", envstr("PANEL_URL", "http://127.0.0.1:8000"))
_panel = urlsplit(PANEL_URL)

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
if _panel.hostname not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_panel.hostname)
CSRF_TRUSTED_ORIGINS = [f"{_panel.scheme}://{_panel.netloc}"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _panel.scheme == "https"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if envbool("TRUST_X_FORWARDED_PROTO", False)
    else None
)

# HTTPS in production: with DEBUG=False and an https:// PANEL_URL, plain HTTP is
# redirected to HTTPS and browsers are told to keep to HTTPS for a year. The
# health check answers over plain HTTP, for probes inside the machine.
_https = _panel.scheme == "https" and not DEBUG
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", _https)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = envint(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _https else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _https)
# Asking browsers to preload HSTS is the domain owner's decision: off unless set.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)

DAEMON_ALLOWED_NETWORKS = networks_from_list(
    "DAEMON_ALLOWED_NETWORKS", envlist("DAEMON_ALLOWED_NETWORKS", [])
)

# CA certificates (PEM) trusted for daemons' TLS, besides the system's.
DAEMON_CA_BUNDLE = envstr("DAEMON_CA_BUNDLE") or None
if DAEMON_CA_BUNDLE and not Path(DAEMON_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(
        f"DAEMON_CA_BUNDLE points at {DAEMON_CA_BUNDLE!r}, which is not a file: "
        "give the path of a PEM file of CA certificates, or leave it unset."
    )

# The heartbeat: every HEARTBEAT_INTERVAL seconds each panel process (one at a time
# on PostgreSQL) pings every node's daemon, HEARTBEAT_CONCURRENCY at once, giving
# each HEARTBEAT_TIMEOUT seconds to answer.
HEARTBEAT_ENABLED = envbool("HEARTBEAT_ENABLED", True)
HEARTBEAT_INTERVAL = envint("HEARTBEAT_INTERVAL", 30, minimum=5, maximum=3600)
HEARTBEAT_TIMEOUT = envint("HEARTBEAT_TIMEOUT", 5, minimum=1, maximum=60)
HEARTBEAT_CONCURRENCY = envint("HEARTBEAT_CONCURRENCY", 100, minimum=1, maximum=10000)

if HEARTBEAT_TIMEOUT >= HEARTBEAT_INTERVAL:
    raise ImproperlyConfigured(
        f"HEARTBEAT_TIMEOUT ({HEARTBEAT_TIMEOUT} s) must be shorter than "
        f"HEARTBEAT_INTERVAL ({HEARTBEAT_INTERVAL} s), or a heartbeat could still "
        "be waiting when the next one is due."
    )

# SFTP logins: failures count over SFTP_FAILURE_WINDOW_S seconds, per e-mail address
# whatever server ID the username names; past SFTP_MAX_FAILURES_PER_ADDRESS from one
# IP address, or SFTP_MAX_FAILURES_PER_USERNAME from anywhere, logins with that
# e-mail address are locked until enough failures age out.
SFTP_FAILURE_WINDOW_S = envint("SFTP_FAILURE_WINDOW_S", 900, minimum=1, maximum=86400)
SFTP_MAX_FAILURES_PER_ADDRESS = envint(
    "SFTP_MAX_FAILURES_PER_ADDRESS", 5, minimum=1, maximum=1000
)
SFTP_MAX_FAILURES_PER_USERNAME = envint(
    "SFTP_MAX_FAILURES_PER_USERNAME", 20, minimum=1, maximum=10000
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "stellarpanel",
    "locations",
    "nodes",
    "servers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "stellarpanel.urls"
ASGI_APPLICATION = "stellarpanel.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        "DATABASE_URL",
        envstr("DATABASE_URL", "sqlite:///db.sqlite3"),
        str(BASE_DIR),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS = {"default": channel_layer_from_url("REDIS_URL", envstr("REDIS_URL"))}

# The cache remembers the nonces of signed daemon requests, so with more than one
# panel process it must be shared: Redis whenever REDIS_URL is set.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": envstr("REDIS_URL"),
            "KEY_PREFIX": "stellarpanel",
        }
        if envstr("REDIS_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "servers:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = time_zone("TIME_ZONE", envstr("TIME_ZONE", "UTC"))
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": log_level("LOG_LEVEL", envstr("LOG_LEVEL", "INFO")),
    },
    "loggers": {
        "django": {"level": "INFO", "propagate": True},
        # Both would say a line per node on every heartbeat; the heartbeat itself
        # speaks only of status changes.
        "httpx": {"level": "WARNING"},
        "apscheduler": {"level": "WARNING"},
    },
}
