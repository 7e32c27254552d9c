from django import forms

from locations.models import Location, country_code


class LocationForm(forms.ModelForm):
    country = forms.CharField(
        required=False,
        max_length=100,
        help_text="An ISO 3166 code (US, USA) or the country's English name.",
    )

    class Meta:
        model = Location
        fields = ["name", "country", "city", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_name(self) -> str:
        return " ".join(self.cleaned_data["name"].split())

    def clean_country(self) -> str:
        value = self.cleaned_data["country"].strip()
        if not value:
            return ""
        code = country_code(value)
        if code is None:
            raise forms.ValidationError(
                f"{value!r} is not a country we know. Enter an ISO 3166 code such "
                "as DE or DEU, or the country's English name, such as Germany."
            )
        return code
