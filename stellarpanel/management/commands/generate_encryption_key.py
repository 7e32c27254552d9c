from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print a new key for the ENCRYPTION_KEY setting."

    def handle(self, *args, **options) -> None:
        self.stdout.write(Fernet.generate_key().decode())
