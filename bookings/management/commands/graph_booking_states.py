from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bookings import selectors, state_diagram


class Command(BaseCommand):
    help = (
        "Draw the booking state machine from its FSM transitions, as SVG (no Graphviz needed), "
        "DOT (for `dot -Tpng`) or Mermaid, to a file or stdout; --write-readme rewrites the "
        "README's generated Mermaid block (make diagram), --check-readme exits 1 when it differs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["svg", "dot", "mermaid"], default="svg")
        parser.add_argument("--output", "-o", default="-", help="File to write; - for stdout.")
        parser.add_argument(
            "--counts", action="store_true", help="Show how many bookings are in each state."
        )
        readme = parser.add_mutually_exclusive_group()
        readme.add_argument(
            "--write-readme",
            action="store_true",
            help="Replace the Mermaid block between the state-diagram markers of the README.",
        )
        readme.add_argument(
            "--check-readme",
            action="store_true",
            help="Exit 1 when the README's Mermaid block is not what the FSM gives.",
        )
        parser.add_argument(
            "--readme",
            default=None,
            help="The README to write or check (default: README.md of the project).",
        )

    def handle(self, *args, **o) -> None:
        if o["write_readme"] or o["check_readme"]:
            self.readme(Path(o["readme"] or Path(settings.BASE_DIR) / "README.md"), o)
            return
        if o["format"] == "mermaid":
            if o["counts"]:
                raise CommandError("--counts draws SVG or DOT only.")
            text = state_diagram.to_mermaid()
        else:
            counts = selectors.state_counts() if o["counts"] else None
            render = state_diagram.to_svg if o["format"] == "svg" else state_diagram.to_dot
            text = render(counts)
        if o["output"] == "-":
            self.stdout.write(text)
        else:
            Path(o["output"]).write_text(text)
            self.stderr.write(f"wrote {o['output']}")

    def readme(self, path: Path, o: dict) -> None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from exc
        if state_diagram.readme_block_of(text) is None:
            raise CommandError(
                f"{path} has no {state_diagram.README_START!r} ... "
                f"{state_diagram.README_END!r} block"
            )
        if o["check_readme"]:
            if state_diagram.readme_block_of(text) != state_diagram.readme_block():
                raise CommandError(
                    f"{path}: the state diagram differs from the FSM; run `make diagram`"
                )
            self.stdout.write(f"{path}: the state diagram matches the FSM")
            return
        new = state_diagram.replace_readme_block(text)
        if new == text:
            self.stdout.write(f"{path}: the state diagram was already up to date")
            return
        path.write_text(new)
        self.stdout.write(f"{path}: state diagram rewritten from the FSM")
