"""The sandbox is an app of its own: only local, test and (when allowed) staging settings
install it, nothing outside sandbox/ imports it, and while it runs a provider every admin page
says that payments are not real."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.test import Client

from ..conftest import ROOT
from ..factories import UserFactory

PACKAGES = ["bookings", "sagas", "config", "ops", "devtools", "bench", "tools"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_nothing_outside_the_sandbox_imports_it():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name == "sandbox" or name.startswith("sandbox.")
    ]
    assert offenders == []


def test_base_settings_do_not_install_the_sandbox():
    from config.settings import base

    assert "sandbox" not in base.INSTALLED_APPS
    assert not any(path.startswith("sandbox.") for path in base.BOOKING_PROVIDERS.values())


@pytest.fixture
def admin_client_(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/admin/", "/admin/bookings/booking/",
                                  "/admin/providers/frauddenyentry/add/"])  # fmt: skip
def test_every_admin_page_says_payments_are_not_real_while_the_sandbox_runs(admin_client_, page):
    body = admin_client_.get(page).content.decode()
    assert 'id="sandbox-banner"' in body and "payments are not real" in body


@pytest.mark.django_db
def test_the_login_page_shows_the_banner_too():
    body = Client().get("/admin/login/").content.decode()
    assert "payments are not real" in body


@pytest.mark.django_db
def test_no_banner_when_no_provider_is_a_sandbox(admin_client_, settings):
    settings.BOOKING_PROVIDERS = dict(settings.REAL_PROVIDERS)
    assert 'id="sandbox-banner"' not in admin_client_.get("/admin/").content.decode()


@pytest.mark.django_db
def test_the_banner_names_other_sandboxes_when_payments_are_real(admin_client_, settings):
    settings.BOOKING_PROVIDERS = {**settings.REAL_PROVIDERS,
                                  "email": settings.SANDBOX_PROVIDERS["email"]}  # fmt: skip
    body = admin_client_.get("/admin/").content.decode()
    assert "email is not real" in body and "payments are not real" not in body
