"""Shared personas: an admin (staff), a server owner, and an outsider."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from locations.models import Location
from nodes.models import MB_PER_GB, Node

PASSWORD = "correct horse battery staple"


def make_user(username: str, staff: bool = False) -> User:
    return User.objects.create_user(
        username,
        f"{username}@example.org",
        PASSWORD,
        is_staff=staff,
    )


@pytest.fixture
def admin_user(db) -> User:
    return make_user("alice", staff=True)


@pytest.fixture
def owner(db) -> User:
    return make_user("bob")


@pytest.fixture
def outsider(db) -> User:
    return make_user("charlie")


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def location(db) -> Location:
    return Location.objects.create(name="US West", country="US", city="Los Angeles")


def make_node(name: str = "alpha", **fields) -> Node:
    values = {
        "host": "203.0.113.10",
        "port": 8080,
        "protocol": Node.Protocol.HTTPS,
        "cpu_cores": 8,
        "memory_mb": 16 * MB_PER_GB,
        "disk_mb": 200 * MB_PER_GB,
    } | fields
    node = Node(name=name, **values)
    node.set_new_token()
    node.save()
    return node


@pytest.fixture
def node(location: Location) -> Node:
    return make_node(location=location)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
