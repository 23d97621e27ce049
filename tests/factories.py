from datetime import date, timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from bookings.models import Resource


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"client{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")


class ResourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Resource
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"room-{n}")
    name = factory.LazyAttribute(lambda r: r.code.replace("-", " ").title())
    capacity = 3
    nightly_price = Decimal("100.00")
    currency = "EUR"


def stay(days_ahead: int = 10, nights: int = 2) -> tuple[date, date]:
    start = date.today() + timedelta(days=days_ahead)
    return start, start + timedelta(days=nights)
