"""Django's SQLite backend, made to live with the project's triggers.

The database rules (capacity, delete guards) are triggers. Two things Django does on
SQLite would trip over them, and both are handled here:

- `flush` deletes table by table in name order, so a delete guard would refuse to
  empty a parent table before its children. PostgreSQL's flush truncates, which
  fires no trigger; this flush sets the triggers aside while it empties the tables,
  and puts them back in the same transaction.
- Some column changes make Django rebuild a table (create a copy, drop the old one,
  rename). That drops the table's triggers and breaks the others that name it, so a
  rebuild sets every trigger aside and creates them again afterwards; a trigger that
  no longer fits the new columns fails the migration loudly.
"""

from django.db.backends.sqlite3 import base, operations, schema


def _triggers(cursor, tables: list[str] | None = None) -> list[tuple[str, str]]:
    sql = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
    params: list[str] = []
    if tables is not None:
        sql += f" AND tbl_name IN ({', '.join(['%s'] * len(tables))})"
        params = list(tables)
    cursor.execute(sql, params)
    return cursor.fetchall()


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
            triggers = _triggers(cursor, tables)
        drop = [f"DROP TRIGGER {self.quote_name(name)}" for name, _ in triggers]
        create = [sql for _, sql in triggers]
        return drop + statements + create


class DatabaseSchemaEditor(schema.DatabaseSchemaEditor):
    def _remake_table(self, model, *args, **kwargs) -> None:
        with self.connection.cursor() as cursor:
            triggers = _triggers(cursor)
        for name, _ in triggers:
            self.execute(f"DROP TRIGGER {self.quote_name(name)}", params=None)
        super()._remake_table(model, *args, **kwargs)
        for _, sql in triggers:
            self.execute(sql, params=None)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    SchemaEditorClass = DatabaseSchemaEditor
