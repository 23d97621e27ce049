from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"

    def ready(self) -> None:
        from sagas.definition import register

        from .saga import BOOKING_SAGA

        register(BOOKING_SAGA)
