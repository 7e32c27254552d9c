#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stellarpanel.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        import stellarpanel.settings  # noqa: F401  (fail early on a bad setting)
    except ImproperlyConfigured as e:
        sys.exit(f"StellarPanel cannot start: {e}")

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
