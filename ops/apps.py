from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations (health, metrics)"

    def ready(self) -> None:
        from django_structlog.signals import bind_extra_request_metadata

        from .request_log import bind_client_address

        bind_extra_request_metadata.connect(bind_client_address, dispatch_uid="ops.client_address")
