"""Tools for developers, tests, `make bench` and `make chaos`; never imported by the product."""
