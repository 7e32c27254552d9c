from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from nodes.models import Node

HEADERS = ("name", "status", "latency", "last answer", "uptime 24 h")


class Command(BaseCommand):
    help = (
        "List every node with its status, latency, last answer and uptime; or, "
        "given a node's name or id, show its heartbeat history, warnings and advice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node", nargs="?", help="a node's name or id")

    def handle(self, *args: Any, node: str | None, **options: Any) -> None:
        try:
            if node is None:
                self.list_nodes()
            else:
                self.show_node(find_node(node))
        except DatabaseError as e:
            raise CommandError(
                f"The database cannot be read ({e}). Is DATABASE_URL right, and "
                "has `manage.py migrate` run?"
            ) from None

    def list_nodes(self) -> None:
        nodes = list(Node.objects.order_by("name", "pk"))
        if not nodes:
            self.stdout.write("No nodes yet: add one in the panel, Admin → Nodes.")
            return
        rows = [HEADERS] + [
            (
                node.name,
                node.status,
                latency(node),
                last_answer(node),
                f"{node.uptime_percent():.1f} %",
            )
            for node in nodes
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
        for row in rows:
            cells = zip(row, widths, strict=True)
            self.stdout.write("  ".join(c.ljust(w) for c, w in cells).rstrip())

    def show_node(self, node: Node) -> None:
        write = self.stdout.write
        write(f"{node.name} (id {node.pk}), {node.url}")
        write(f"  location:     {node.location or '—'}")
        write(f"  status:       {node.status}")
        write(f"  latency:      {latency(node)}")
        write(f"  last answer:  {last_answer(node)}")
        write(f"  uptime 24 h:  {node.uptime_percent():.1f} %")
        if node.last_error_category:
            write(f"  last error:   {node.last_error_category}: {node.last_error}")

        history = node.latency_history
        write("")
        if history:
            write(
                f"Latency, last {len(history)} answers (ms, oldest first): "
                f"min {min(history)}, mean {sum(history) // len(history)}, "
                f"max {max(history)}"
            )
            write("  " + " ".join(str(ms) for ms in history))
        else:
            write("Latency: no answer yet.")

        changes = list(node.recent_status_changes())
        write("")
        write("Status changes, newest first:" if changes else "Status changes: none.")
        for change in changes:
            when = timezone.localtime(change.created).strftime("%Y-%m-%d %H:%M:%S")
            why = f" ({change.reason}: {change.message})" if change.reason else ""
            write(f"  {when}  {change.old} → {change.new}{why}")

        self.sentences("Warnings", node.warnings())
        self.sentences("What to check", node.advice())

    def sentences(self, title: str, sentences: list[str]) -> None:
        if sentences:
            self.stdout.write("")
            self.stdout.write(f"{title}:")
            for sentence in sentences:
                self.stdout.write(f"  - {sentence}")


def find_node(name_or_id: str) -> Node:
    value = name_or_id.strip()
    if value.isdigit():
        node = Node.objects.filter(pk=int(value)).first()
        if node is not None:
            return node
    nodes = list(Node.objects.filter(name__iexact=value).order_by("pk"))
    if len(nodes) == 1:
        return nodes[0]
    if nodes:
        ids = ", ".join(str(node.pk) for node in nodes)
        raise CommandError(
            f"{len(nodes)} nodes are named {value!r} (ids {ids}): give the id."
        )
    raise CommandError(
        f"No node has the name or id {value!r}. `manage.py nodestatus` lists them."
    )


def latency(node: Node) -> str:
    return "—" if node.latency_ms is None else f"{node.latency_ms} ms"


def last_answer(node: Node) -> str:
    seconds = node.seconds_since_heartbeat()
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"
