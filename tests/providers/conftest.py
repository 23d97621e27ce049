from .stripe_server import stripe_server

__all__ = ["stripe_server"]
