from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "bookings.providers"
    label = "providers"
    verbose_name = "Sandbox providers (ledgers)"
