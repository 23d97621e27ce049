from pathlib import Path

from django.core.management.base import BaseCommand

from bookings import selectors, state_diagram


class Command(BaseCommand):
    help = (
        "Draw the booking state machine from its FSM transitions, as SVG (no Graphviz needed) "
        "or DOT (for `dot -Tpng`), to a file or stdout."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["svg", "dot"], default="svg")
        parser.add_argument("--output", "-o", default="-", help="File to write; - for stdout.")
        parser.add_argument(
            "--counts", action="store_true", help="Show how many bookings are in each state."
        )

    def handle(self, *args, **o) -> None:
        counts = selectors.state_counts() if o["counts"] else None
        render = state_diagram.to_svg if o["format"] == "svg" else state_diagram.to_dot
        text = render(counts)
        if o["output"] == "-":
            self.stdout.write(text)
        else:
            Path(o["output"]).write_text(text)
            self.stderr.write(f"wrote {o['output']}")
