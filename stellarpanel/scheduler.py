"""The scheduler embedded in every panel process: the heartbeat, every interval.

Each panel process starts one (see asgi.py). On PostgreSQL an advisory lock lets one
sweep run at a time; the other processes' runs find it taken and skip.
"""

import atexit
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from django.conf import settings
from django.db import close_old_connections

# Soon after start, but after Daphne has begun to serve.
FIRST_RUN_AFTER = timedelta(seconds=2)

_scheduler: BackgroundScheduler | None = None
_lock = threading.Lock()


def heartbeat() -> None:
    """One sweep, with no database connection left open between runs."""
    from nodes.heartbeat import run_sweep

    close_old_connections()
    try:
        run_sweep()
    finally:
        close_old_connections()


def add_heartbeat(scheduler: BaseScheduler) -> None:
    scheduler.add_job(
        heartbeat,
        "interval",
        seconds=settings.HEARTBEAT_INTERVAL,
        id="heartbeat",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=settings.HEARTBEAT_INTERVAL,
        next_run_time=datetime.now(UTC) + FIRST_RUN_AFTER,
    )


def start() -> BackgroundScheduler:
    """Start this process's scheduler, once however often it is called."""
    global _scheduler
    with _lock:
        if _scheduler is None:
            scheduler = BackgroundScheduler(timezone=UTC)
            add_heartbeat(scheduler)
            scheduler.start()
            atexit.register(stop)
            _scheduler = scheduler
        return _scheduler


def stop() -> None:
    """Stop the scheduler without waiting for a sweep under way."""
    global _scheduler
    with _lock:
        if _scheduler is not None and _scheduler.running:
            _scheduler.shutdown(wait=False)
        _scheduler = None
