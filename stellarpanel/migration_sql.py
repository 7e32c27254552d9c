"""Raw SQL for migrations that differ by database: the project's triggers."""

from django.db import migrations


def per_vendor(
    forward: dict[str, list[str]], reverse: dict[str, list[str]]
) -> migrations.RunPython:
    """Run the statements written for the current database, one at a time."""

    def runner(statements: dict[str, list[str]]):
        def run(apps, schema_editor) -> None:
            for sql in statements[schema_editor.connection.vendor]:
                schema_editor.execute(sql, params=None)

        return run

    return migrations.RunPython(runner(forward), runner(reverse))
