"""Django's SQLite backend, with a flush that does not fire the project's triggers.

The delete guards (a location with nodes, a node with servers) are triggers. On
PostgreSQL, `flush` truncates, which fires no trigger; on SQLite it deletes table by
table in name order, so a guard would refuse to empty a parent table before its
children. This flush sets the triggers aside while it empties the tables, and puts
them back in the same transaction.
"""

from django.db.backends.sqlite3 import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self,
        style,
        tables: list[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        statements = super().sql_flush(
            style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if not statements:
            return statements
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                f"AND tbl_name IN ({', '.join(['%s'] * len(tables))})",
                list(tables),
            )
            triggers = cursor.fetchall()
        drop = [f"DROP TRIGGER {self.quote_name(name)}" for name, _ in triggers]
        create = [sql for _, sql in triggers]
        return drop + statements + create


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
