"""The demo data of `make run` (issue 15, item 8): no fixed admin password, the generated one
printed in the banner, demo data refused unless the settings allow it, and the banner's
commands working verbatim when pasted in a fresh shell."""

from __future__ import annotations

import io
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from devtools.harness import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings, tmp_path):
    settings.DEMO_DATA_ALLOWED = True
    settings.DATA_DIR = tmp_path
    return tmp_path / "demo-admin-password"


def banner(port: int = 8000) -> str:
    out = io.StringIO()
    call_command("demo_info", "--port", str(port), stdout=out)
    return out.getvalue()


def test_the_demo_admin_gets_a_random_password_kept_readable_by_its_owner_only(demo):
    call_command("seed_demo", stdout=io.StringIO())
    password = demo.read_text().strip()
    assert len(password) >= 16
    assert stat.S_IMODE(demo.stat().st_mode) == 0o600
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert not admin.check_password("admin")
    # The API client logs in with its token only.
    assert not get_user_model().objects.get(username="demo-client").has_usable_password()


def test_seeding_again_keeps_the_password_the_banner_printed(demo):
    call_command("seed_demo", stdout=io.StringIO())
    first = demo.read_text()
    call_command("seed_demo", stdout=io.StringIO())
    assert demo.read_text() == first


def test_an_older_demos_admin_admin_gets_a_random_password(demo):
    get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
    call_command("seed_demo", stdout=io.StringIO())
    admin = get_user_model().objects.get(username="admin")
    assert not admin.check_password("admin")
    assert admin.check_password(demo.read_text().strip())


def test_the_banner_prints_the_generated_password_and_commands_that_ask_for_their_settings(
    demo,
):
    call_command("seed_demo", stdout=io.StringIO())
    text = banner()
    password = demo.read_text().strip()
    assert f"login admin / {password}" in text and "admin / admin" not in text
    [line] = [line for line in text.splitlines() if "create_booking" in line]
    assert "DJANGO_SETTINGS_MODULE=config.settings.test" in line
    assert line.strip().startswith(f"cd {shlex.quote(str(ROOT))} && ")


def test_demo_data_is_refused_unless_the_settings_allow_it(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    assert settings.DEMO_DATA_ALLOWED is False  # every settings module but local.py
    for command in ("seed_demo", "demo_info"):
        with pytest.raises(CommandError, match=re.escape("refused under config.settings.test")):
            call_command(command, stdout=io.StringIO())
    assert not get_user_model().objects.filter(username="admin").exists()
    assert not (tmp_path / "demo-admin-password").exists()


def fresh_shell(command: str) -> subprocess.CompletedProcess:
    """`command` run as pasted into a new terminal: none of this process's environment but
    PATH and HOME."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )


@pytest.mark.integration
def test_the_banners_commands_work_verbatim_in_a_fresh_shell(tmp_path):
    """`make run`'s sequence on the local settings in a data directory of its own (SQLite, the
    filesystem broker), a worker and the web server; then the banner's create_booking line (four
    times, as a newcomer trying it would) and its curl line, pasted into a shell that has none
    of their environment."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATA_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    for name in ("DATABASE_URL", "CACHE_URL", "COORDINATION_CACHE_URL"):
        env.pop(name, None)
    manage = [sys.executable, "manage.py"]
    for args in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run([*manage, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    text = subprocess.run(
        [*manage, "demo_info", "--port", str(port)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    logs = tmp_path / "processes.log"
    with open(logs, "w") as log:
        processes = [
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for command in (
                [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--concurrency=1",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
            )
        ]
    try:
        [create] = [line.strip() for line in text.splitlines() if "create_booking" in line]
        for _ in range(4):  # a newcomer runs it again and again: the same dates each time
            done = fresh_shell(create)
            assert done.returncode == 0, done.stderr[-2000:] + Path(logs).read_text()[-2000:]
            assert re.fullmatch(r"BK-\w+ completed\n", done.stdout), done.stdout

        start = text.index("  curl -s -X POST")
        curl = text[start : text.index("}'", start) + 2]
        deadline = time.monotonic() + 60
        while True:
            posted = fresh_shell(curl)
            if '"reference"' in posted.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the web server may still be starting
        assert '"state":"completed"' in posted.stdout, posted.stdout + posted.stderr
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
        for process in processes:
            process.wait(timeout=30)
