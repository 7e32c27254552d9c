import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.test import Client

from locations.models import Location, country_code
from tests.conftest import make_node

pytestmark = pytest.mark.django_db


class TestLocationViews:
    def test_it_lists_locations_with_their_node_count(
        self, admin_client: Client, location: Location
    ) -> None:
        make_node(location=location)
        r = admin_client.get("/admin/locations/")
        assert r.status_code == 200
        assert r.context["locations"][0].node_count == 1
        self.assertContainsOnce(r, "Los Angeles, US")

    def test_it_creates_a_location_storing_the_country_code(
        self, admin_client: Client
    ) -> None:
        r = admin_client.post(
            "/admin/locations/new/",
            {"name": "  EU   Central ", "country": "germany", "city": "Frankfurt"},
        )
        assert r.status_code == 302
        location = Location.objects.get()
        # Whitespace is tidied and the country name becomes its code.
        assert location.name == "EU Central"
        assert location.country == "DE"
        assert location.place == "Frankfurt, DE"

    @pytest.mark.parametrize(
        "typed, code",
        [
            ("US", "US"),
            ("usa", "US"),
            ("United States", "US"),
            ("United States of America", "US"),
            ("uk", "GB"),
            ("Côte d'Ivoire", "CI"),
            ("cote divoire", "CI"),
            ("South Korea", "KR"),
            ("Korea, Republic of", "KR"),
            ("DEU", "DE"),
            ("Kosovo", "XK"),
        ],
    )
    def test_it_understands_country_codes_and_names(
        self, typed: str, code: str
    ) -> None:
        assert country_code(typed) == code

    def test_it_refuses_an_unknown_country_and_keeps_the_input(
        self, admin_client: Client
    ) -> None:
        r = admin_client.post(
            "/admin/locations/new/", {"name": "Mars", "country": "Marsland"}
        )
        assert r.status_code == 200
        assert "is not a country we know" in r.context["form"].errors["country"][0]
        self.assertContainsOnce(r, 'value="Mars"')
        assert not Location.objects.exists()

    def test_it_requires_a_name(self, admin_client: Client) -> None:
        r = admin_client.post("/admin/locations/new/", {"name": "", "country": "US"})
        assert "required" in r.context["form"].errors["name"][0]
        assert not Location.objects.exists()

    def test_it_refuses_a_duplicate_name_whatever_its_case(
        self, admin_client: Client, location: Location
    ) -> None:
        r = admin_client.post("/admin/locations/new/", {"name": "us west"})
        assert r.status_code == 200
        assert "already exists" in str(r.context["form"].errors)
        assert Location.objects.count() == 1

    def test_it_edits_a_location(
        self, admin_client: Client, location: Location
    ) -> None:
        r = admin_client.post(
            f"/admin/locations/{location.pk}/edit/",
            {"name": "US West", "country": "CA", "city": "Vancouver"},
        )
        assert r.status_code == 302
        location.refresh_from_db()
        assert location.place == "Vancouver, CA"

    def test_it_deletes_an_empty_location_after_confirmation(
        self, admin_client: Client, location: Location
    ) -> None:
        r = admin_client.get(f"/admin/locations/{location.pk}/delete/")
        self.assertContainsOnce(r, "Delete location")
        assert Location.objects.exists()

        r = admin_client.post(f"/admin/locations/{location.pk}/delete/")
        assert r.status_code == 302
        assert not Location.objects.exists()

    def test_it_refuses_to_delete_a_location_with_nodes_and_names_them(
        self, admin_client: Client, location: Location
    ) -> None:
        make_node("fra-1", location=location)
        make_node("fra-2", location=location, port=8081)
        r = admin_client.post(f"/admin/locations/{location.pk}/delete/")
        assert r.status_code == 200
        self.assertContainsOnce(r, "cannot be deleted while it has nodes: fra-1, fra-2")
        assert Location.objects.exists()

    @staticmethod
    def assertContainsOnce(response, text: str) -> None:  # noqa: N802
        assert response.content.decode().count(text) == 1, text


class TestLocationDeleteGuard:
    """The database itself refuses to delete a location that has nodes."""

    def test_it_refuses_a_raw_sql_delete(self, location: Location) -> None:
        make_node(location=location)
        with (
            pytest.raises(IntegrityError, match="stellar: location has nodes"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "DELETE FROM locations_location WHERE id = %s", [location.pk]
            )
        assert Location.objects.filter(pk=location.pk).exists()

    def test_it_allows_a_raw_sql_delete_of_an_empty_location(
        self, location: Location
    ) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM locations_location WHERE id = %s", [location.pk]
            )
        assert not Location.objects.exists()


class TestLocationPermissions:
    URLS = ["/admin/locations/", "/admin/locations/new/"]

    @pytest.mark.parametrize("url", URLS)
    def test_it_sends_anonymous_users_to_log_in(self, client: Client, url: str) -> None:
        r = client.get(url)
        assert r.status_code == 302
        assert r["Location"] == f"/login/?next={url}"

    @pytest.mark.parametrize("url", URLS)
    def test_it_refuses_non_staff_users(self, owner_client: Client, url: str) -> None:
        assert owner_client.get(url).status_code == 403

    def test_it_refuses_non_staff_posts_and_changes_nothing(
        self, owner_client: Client, location: Location
    ) -> None:
        for url in (
            f"/admin/locations/{location.pk}/edit/",
            f"/admin/locations/{location.pk}/delete/",
        ):
            assert owner_client.post(url, {"name": "Taken"}).status_code == 403
        location.refresh_from_db()
        assert location.name == "US West"

    def test_it_refuses_posts_without_a_csrf_token(self, admin_user: User) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)
        r = client.post("/admin/locations/new/", {"name": "Sneaky"})
        assert r.status_code == 403
        assert not Location.objects.exists()
