"""Words for the refusals of the database's own rules.

The triggers raise messages that start with "stellar: " and name the rule. A view
that meets one (a race its own checks could not see) turns it into a sentence for
the user instead of a 500.
"""

import re

from django.db import DatabaseError

SENTENCES = {
    "node capacity: cpu": "The node no longer has enough CPU free for this server.",
    "node capacity: memory": (
        "The node no longer has enough memory free for this server."
    ),
    "node capacity: disk": "The node no longer has enough disk free for this server.",
    "node limits below use: cpu": "The servers on this node use more CPU than that.",
    "node limits below use: memory": (
        "The servers on this node use more memory than that."
    ),
    "node limits below use: disk": "The servers on this node use more disk than that.",
    "allocation on another node": "An allocation must be on the server's own node.",
    "server allocations on another node": (
        "The server's allocations are on its current node; free them first."
    ),
    "allocation assigned": "The allocation is assigned to a server.",
    "node has servers or assigned allocations": (
        "The node still has servers or assigned allocations."
    ),
    "location has nodes": "The location still has nodes.",
}
RULE = re.compile(r"stellar: ([a-z :]+)")


def rule_broken(error: DatabaseError) -> str | None:
    """The rule a database error reports, such as "node capacity: memory"."""
    match = RULE.search(str(error))
    return match.group(1).strip() if match else None


def refusal(error: DatabaseError) -> str | None:
    """A sentence for the user, or None when the error is not one of our rules."""
    rule = rule_broken(error)
    return SENTENCES.get(rule) if rule else None
