"""Production runs real providers: Stripe, the product's own inventory and fraud rules, SMTP.
A sandbox is refused unless the deployment says it is staging (BOOKING_ALLOW_SANDBOX=1), and
then it is installed and shown."""

from __future__ import annotations

import pytest

from tests.production.test_settings import GOOD, manage

SANDBOX_PAYMENTS = {"BOOKING_PAYMENT_PROVIDER": "sandbox.payments.SandboxPaymentGateway"}


def test_production_defaults_are_the_real_providers_and_pass_the_deploy_check():
    result = manage(
        "shell", "-c", "from django.conf import settings; print(settings.BOOKING_PROVIDERS)",
        env=GOOD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for path in (
        "bookings.providers.stripe_payments.StripePaymentGateway",
        "bookings.providers.inventory.OwnInventory",
        "bookings.providers.fraud.RulesFraudScreening",
        "bookings.providers.email.DjangoEmailSender",
    ):
        assert path in result.stdout
    check = manage("check", "--deploy", "--fail-level", "WARNING", env=GOOD)
    assert check.returncode == 0, check.stderr


def test_production_with_stripe_needs_its_api_key():
    env = {k: v for k, v in GOOD.items() if k != "STRIPE_API_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "The environment variable STRIPE_API_KEY is required" in result.stderr


@pytest.mark.parametrize("allow", ["", "0"])
def test_production_refuses_a_sandbox_provider_unless_allowed(allow):
    result = manage("check", env={**GOOD, **SANDBOX_PAYMENTS, "BOOKING_ALLOW_SANDBOX": allow})
    assert result.returncode != 0
    assert "names sandbox providers (payments: sandbox.payments.SandboxPaymentGateway)" in (
        result.stderr
    )
    assert "BOOKING_ALLOW_SANDBOX=1" in result.stderr


def test_a_staging_deployment_may_run_the_sandbox_which_is_then_installed():
    env = {**GOOD, **SANDBOX_PAYMENTS, "BOOKING_ALLOW_SANDBOX": "1"}
    result = manage(
        "shell", "-c", "from django.apps import apps; print(apps.is_installed('sandbox'))", env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("True")
    assert manage("check", "--deploy", "--fail-level", "WARNING", env=env).returncode == 0


def test_production_does_not_install_the_sandbox_app():
    result = manage(
        "shell", "-c", "from django.apps import apps; print(apps.is_installed('sandbox'))", env=GOOD
    )
    assert result.stdout.strip().endswith("False"), result.stderr
