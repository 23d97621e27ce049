"""The sandbox providers: stand-ins for the outside systems that behave like real ones (ledgers,
idempotency keys) and react to magic values, for `make run`, the demo and the tests. Installed
in local and test settings only; production refuses it unless BOOKING_ALLOW_SANDBOX=1. Nothing
outside this package imports it: the product reaches providers through bookings.providers.base."""
