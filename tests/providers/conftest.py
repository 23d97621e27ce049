from .smtp_server import smtp_server
from .stripe_server import stripe_server

__all__ = ["smtp_server", "stripe_server"]
