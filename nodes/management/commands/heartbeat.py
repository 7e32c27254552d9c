from argparse import ArgumentParser
from datetime import UTC
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from django.conf import settings
from django.core.management.base import BaseCommand

from nodes.heartbeat import run_sweep
from stellarpanel.scheduler import add_heartbeat


class Command(BaseCommand):
    help = (
        "Ping every node's daemon every HEARTBEAT_INTERVAL seconds until stopped, "
        "or once with --once. For a heartbeat process of its own, set "
        "HEARTBEAT_ENABLED=False on the panel processes."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Ping every node once, print what each answered, and exit.",
        )

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if once:
            run_sweep(stdout=self.stdout)
            return

        scheduler = BlockingScheduler(timezone=UTC)
        add_heartbeat(scheduler)
        self.stdout.write(
            f"Pinging every node every {settings.HEARTBEAT_INTERVAL} s; "
            "Ctrl+C stops. Status changes go to the log."
        )
        try:
            scheduler.start()
        except KeyboardInterrupt:
            scheduler.shutdown(wait=False)
        self.stdout.write("Stopped.")
