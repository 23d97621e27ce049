"""The README's state diagram is generated from the booking FSM (issue 18): `make diagram`
(`manage.py graph_booking_states --write-readme`) writes it, and these tests fail while the two
disagree."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_fsm import RETURN_VALUE

from bookings import state_diagram
from bookings.models import Booking
from tests.conftest import ROOT

STALE = """# Title

Before.

{start}
```mermaid
stateDiagram-v2
    [*] --> pending
    pending --> fraud_check: start_saga
```
{end}

After.
"""


def stale_readme(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(STALE.format(start=state_diagram.README_START, end=state_diagram.README_END))
    return path


def test_the_readme_diagram_is_the_one_the_fsm_gives():
    readme = (ROOT / "README.md").read_text()
    block = state_diagram.readme_block_of(readme)
    assert block is not None, (
        f"README.md has lost its {state_diagram.README_START!r} ... "
        f"{state_diagram.README_END!r} markers: put them back around the state diagram, then "
        "run `make diagram`"
    )
    assert block == state_diagram.readme_block(), (
        "README.md's state diagram disagrees with the booking FSM (bookings/models.py): run "
        "`make diagram` (manage.py graph_booking_states --write-readme) and commit README.md"
    )


def test_the_mermaid_text_has_every_transition_of_the_fsm():
    mermaid = state_diagram.to_mermaid()
    assert mermaid.startswith("stateDiagram-v2\n    [*] --> pending\n")
    field = Booking._meta.get_field("state")
    expected = set()
    for transition in field.get_all_transitions(Booking):
        targets = (
            transition.target.allowed_states
            if isinstance(transition.target, RETURN_VALUE)
            else [transition.target]
        )
        for target in targets:
            expected.add((transition.source, target, transition.name))
    lines = mermaid.splitlines()[2:]
    drawn = set()
    for line in lines:
        pair, label = line.strip().split(": ")
        source, target = pair.split(" --> ")
        for name in label.removesuffix(" (operator)").split(" / "):
            drawn.add((source, target, name))
    assert drawn == expected
    # What the issue found missing from the hand-drawn diagram, now read from the code.
    for source in ("fraud_check", "preauthorizing", "confirming"):
        assert f"    {source} --> requires_attention: require_attention" in lines
        assert f"    requires_attention --> {source}: resume (operator)" in lines


def test_write_readme_replaces_only_the_generated_block(tmp_path):
    path = stale_readme(tmp_path)
    out = StringIO()
    call_command("graph_booking_states", write_readme=True, readme=str(path), stdout=out)
    text = path.read_text()
    assert "state diagram rewritten" in out.getvalue()
    assert text.startswith("# Title\n\nBefore.\n\n")
    assert text.endswith("\n\nAfter.\n")
    assert state_diagram.readme_block_of(text) == state_diagram.readme_block()
    out = StringIO()
    call_command("graph_booking_states", check_readme=True, readme=str(path), stdout=out)
    assert "matches the FSM" in out.getvalue()


def test_check_readme_fails_on_a_stale_diagram_and_says_how_to_fix_it(tmp_path):
    path = stale_readme(tmp_path)
    with pytest.raises(CommandError, match="run `make diagram`"):
        call_command("graph_booking_states", check_readme=True, readme=str(path))


def test_a_readme_without_the_markers_is_refused(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# No diagram here\n")
    with pytest.raises(CommandError, match="state-diagram:start"):
        call_command("graph_booking_states", write_readme=True, readme=str(path))
    assert path.read_text() == "# No diagram here\n"


def test_mermaid_prints_to_stdout_and_refuses_counts():
    out = StringIO()
    call_command("graph_booking_states", format="mermaid", stdout=out)
    assert out.getvalue().rstrip("\n") == state_diagram.to_mermaid().rstrip("\n")
    with pytest.raises(CommandError, match="--counts"):
        call_command("graph_booking_states", format="mermaid", counts=True)
