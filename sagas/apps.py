from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Saga engine"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
