"""A database that a benchmark makes, migrates, and drops again."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database(suffix: str) -> Iterator[str]:
    """Create, migrate, and finally drop a database of the configured kind.

    SQLite gets a file in a temporary folder; PostgreSQL a database named after the
    configured one with `suffix` added. DEBUG is off, as in production: no query log
    but what a benchmark captures itself.
    """
    from django.db import connection
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    with tempfile.TemporaryDirectory(prefix="stellarpanel-bench-") as tmp:
        test = connection.settings_dict.setdefault("TEST", {})
        if connection.vendor == "sqlite":
            test["NAME"] = os.path.join(tmp, "bench.sqlite3")
        else:
            test["NAME"] = f"{connection.settings_dict['NAME']}_{suffix}"
        setup_test_environment(debug=False)
        old_config = setup_databases(
            verbosity=0, interactive=False, serialized_aliases=set()
        )
        try:
            yield test["NAME"]
        finally:
            teardown_databases(old_config, verbosity=0)
            teardown_test_environment()
