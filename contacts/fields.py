from django.core.exceptions import ValidationError
from django.db import models

from .phones import InvalidPhoneNumber, normalize_phone


class PhoneNumberField(models.CharField):
    """A phone number stored in E.164; forms and ``full_clean()`` accept any common format."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("max_length", 16)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("max_length") == 16:
            del kwargs["max_length"]
        return name, path, args, kwargs

    # Normalization lives in clean(), not to_python(): Django also calls to_python() to
    # prepare lookup values, and a filter on an odd number must find nothing, not raise.
    def clean(self, value, model_instance):
        value = super().clean(value, model_instance)
        if value in self.empty_values:
            return value
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValidationError(
                "%(value)s is not a valid phone number (%(reason)s).",
                code="invalid_phone",
                params={"value": value, "reason": exc.reason},
            ) from exc
