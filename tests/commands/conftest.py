from ..admin.conftest import completed, email_parked, room, void_parked  # noqa: F401
