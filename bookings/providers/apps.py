from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "bookings.providers"
    label = "providers"
    verbose_name = "Providers (the product's own: fraud rules, inventory, e-mail log)"
