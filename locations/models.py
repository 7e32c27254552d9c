import unicodedata

from django.db import models
from django.db.models.functions import Lower

from locations.countries import COUNTRIES


def _fold(text: str) -> str:
    """Lowercase, without accents or punctuation: "Côte d'Ivoire" → "cote divoire"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = (c for c in decomposed if c.isalnum() or c.isspace())
    return " ".join("".join(kept).split())


_BY_KEY: dict[str, str] = {}
for _alpha2, _alpha3, _names in COUNTRIES:
    for _key in (_alpha2, _alpha3, *_names):
        _BY_KEY.setdefault(_fold(_key), _alpha2)
COUNTRY_NAMES = {alpha2: names[0] for alpha2, _, names in COUNTRIES}


def country_code(value: str) -> str | None:
    """The ISO 3166-1 alpha-2 code for a code or an English name, if one matches."""
    return _BY_KEY.get(_fold(value))


class Location(models.Model):
    name = models.CharField(max_length=100, unique=True)
    country = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO 3166-1 alpha-2 code, such as US.",
    )
    city = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="location_name_unique_ci",
                violation_error_message="A location with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def country_name(self) -> str:
        return COUNTRY_NAMES.get(self.country, self.country)

    @property
    def place(self) -> str:
        """Where the location is, as "Los Angeles, US"; empty when unknown."""
        return ", ".join(part for part in (self.city, self.country) if part)
