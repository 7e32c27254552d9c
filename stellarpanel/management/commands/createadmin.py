import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import DatabaseError, transaction

PASSWORD_VARIABLE = "STELLAR_ADMIN_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create the first admin without questions. The password comes from "
        f"--password-file, else from {PASSWORD_VARIABLE}, else it is generated and "
        "printed once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument(
            "--password-file",
            type=Path,
            help="a file holding the password (its first line is used)",
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="if the user exists, make them an admin and set their password",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = options["username"].strip()
        email = options["email"].strip()
        check_username(User, username)
        check_email(email)

        password, generated = self.password(options["password_file"])
        try:
            created = self.save_admin(
                User, username, email, password, options["update"]
            )
        except DatabaseError as e:
            raise CommandError(
                f"The database cannot be written ({e}). Is DATABASE_URL right, and "
                "has `manage.py migrate` run?"
            ) from None

        verb = "created" if created else "updated"
        self.stdout.write(self.style.SUCCESS(f"Admin {username} was {verb}."))
        if generated:
            self.stdout.write(
                f"Password: {password}\nIt is shown this once: keep it somewhere safe."
            )

    def save_admin(
        self, User: Any, username: str, email: str, password: str, update: bool
    ) -> bool:
        """Create or update the admin; return whether it was created."""
        with transaction.atomic():
            user = User.objects.select_for_update().filter(username=username).first()
            if user is not None and not update:
                raise CommandError(
                    f"A user named {username!r} already exists. Pass --update to "
                    "make them an admin and set their password, or choose another "
                    "--username."
                )
            others = User.objects.filter(email__iexact=email)
            if user is not None:
                others = others.exclude(pk=user.pk)
            if others.exists():
                raise CommandError(
                    f"Another user already has the e-mail address {email}: give "
                    "--email an address of this admin's own (it is part of their "
                    "SFTP username)."
                )
            user = user or User(username=username)
            check_password(password, user, email)
            created = user.pk is None
            user.email = email
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(password)
            user.save()
        return created

    def password(self, path: Path | None) -> tuple[str, bool]:
        """The password to set, and whether it was generated here."""
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = getattr(e, "strerror", None) or "it is not UTF-8 text"
                raise CommandError(
                    f"--password-file {path} cannot be read: {reason}."
                ) from None
            lines = text.splitlines()
            if not lines or not lines[0]:
                raise CommandError(
                    f"--password-file {path} is empty: put the password on its "
                    "first line."
                )
            return lines[0], False
        if os.getenv(PASSWORD_VARIABLE):
            return os.environ[PASSWORD_VARIABLE], False
        return secrets.token_urlsafe(18), True


def check_username(User: Any, username: str) -> None:
    if not username:
        raise CommandError("--username is empty: give the admin's login name.")
    try:
        User.username_validator(username)
    except ValidationError as e:
        raise CommandError(f"--username {username!r}: {' '.join(e.messages)}") from None


def check_email(email: str) -> None:
    try:
        validate_email(email)
    except ValidationError:
        raise CommandError(
            f"--email {email!r} is not an e-mail address: give one such as "
            "admin@example.com."
        ) from None


def check_password(password: str, user: Any, email: str) -> None:
    user.email = email
    try:
        validate_password(password, user)
    except ValidationError as e:
        raise CommandError(
            "The password is refused: " + " ".join(e.messages) + " Choose a "
            f"stronger one, or leave out --password-file and {PASSWORD_VARIABLE} "
            "to have one generated."
        ) from None
