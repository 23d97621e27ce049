"""The booking state machine drawn from its own transitions (Booking.state's @transition
methods), so the picture can never drift from the code: DOT for Graphviz, and an SVG arc diagram
made here (no `dot` binary needed), and Mermaid text for the README (between the markers
README_START and README_END, rewritten by `manage.py graph_booking_states --write-readme`, `make
diagram`). Used by the admin dashboard and `manage.py graph_booking_states`."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import cast

import graphviz
from django_fsm import RETURN_VALUE, FSMField

from .models import Booking

# Colours shared with the admin's state badges.
STATE_COLOURS = {
    "pending": "#64748b",
    "fraud_check": "#2563eb",
    "preauthorizing": "#2563eb",
    "confirming": "#2563eb",
    "notifying": "#2563eb",
    "completed": "#15803d",
    "compensating": "#b45309",
    "cancelled": "#475569",
    "requires_attention": "#b91c1c",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    names: tuple[str, ...]
    by_operator: bool  # fired by an operator action (retry, resolve), not by the engine


def _state_field() -> FSMField:
    return cast(FSMField, Booking._meta.get_field("state"))


def edges() -> list[Edge]:
    """Every (source, target) pair of the FSM with the transitions that join them, in the order
    the transitions are declared. A RETURN_VALUE target counts each state it may return."""
    field = _state_field()
    pairs: dict[tuple[str, str], list] = {}
    for transition in field.get_all_transitions(Booking):
        targets = (
            transition.target.allowed_states
            if isinstance(transition.target, RETURN_VALUE)
            else [transition.target]
        )
        sources = Booking.State.values if transition.source in ("*", "+") else [transition.source]
        for source in sources:
            for target in targets:
                if target is not None and target != source:
                    pairs.setdefault((str(source), str(target)), []).append(transition)
    rank = {state: i for i, state in enumerate(Booking.State.values)}
    return [
        Edge(
            source,
            target,
            tuple(dict.fromkeys(t.name for t in transitions)),
            all(t.custom.get("admin") is False for t in transitions),
        )
        for (source, target), transitions in sorted(
            pairs.items(), key=lambda item: (rank.get(item[0][0], 99), rank.get(item[0][1], 99))
        )
    ]


def state_order() -> list[str]:
    """States left to right: reverse post-order of a depth-first walk from the initial state,
    so that every edge not closing a cycle points right."""
    initial = str(_state_field().default)
    rank = {state: i for i, state in enumerate(Booking.State.values)}
    outgoing: dict[str, list[str]] = {}
    for edge in edges():
        outgoing.setdefault(edge.source, []).append(edge.target)
    # Follow targets in the order the states are declared, so the happy path comes first.
    for targets in outgoing.values():
        targets.sort(key=lambda state: rank.get(state, len(rank)))
    seen: set[str] = set()
    post: list[str] = []

    def walk(state: str) -> None:
        seen.add(state)
        for nxt in outgoing.get(state, []):
            if nxt not in seen:
                walk(nxt)
        post.append(state)

    walk(initial)
    for state in Booking.State.values:  # unreachable states still appear, at the end
        if state not in seen:
            walk(state)
    return list(reversed(post))


def to_dot(counts: dict[str, int] | None = None) -> str:
    """Graphviz DOT source (render with `dot -Tsvg`)."""
    graph = graphviz.Digraph("booking_states", graph_attr={"rankdir": "LR"})
    graph.attr("node", shape="box", style="rounded,filled", fontcolor="white")
    for state in state_order():
        label = state if counts is None else f"{state}\n{counts.get(state, 0)}"
        graph.node(state, label=label, fillcolor=STATE_COLOURS.get(state, "#334155"))
    for edge in edges():
        graph.edge(
            edge.source,
            edge.target,
            label=" / ".join(edge.names),
            style="dashed" if edge.by_operator else "solid",
        )
    return graph.source


# The README's generated block lies between these two lines (tests/commands/test_state_diagram.py
# fails when it differs from to_mermaid()).
README_START = "<!-- state-diagram:start (generated: make diagram) -->"
README_END = "<!-- state-diagram:end -->"


def to_mermaid() -> str:
    """A Mermaid `stateDiagram-v2`: the initial state, then every edge in declaration order,
    labelled with its transitions; those fired only by an operator action say so."""
    lines = ["stateDiagram-v2", f"    [*] --> {_state_field().default}"]
    for edge in edges():
        label = " / ".join(edge.names) + (" (operator)" if edge.by_operator else "")
        lines.append(f"    {edge.source} --> {edge.target}: {label}")
    return "\n".join(lines) + "\n"


def readme_block() -> str:
    """What README.md holds between README_START and README_END (markers included)."""
    return f"{README_START}\n```mermaid\n{to_mermaid()}```\n{README_END}"


def replace_readme_block(text: str) -> str:
    """`text` (a README) with its generated block replaced by readme_block(). ValueError when
    the markers are missing or out of order."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"no {README_START!r} ... {README_END!r} block")
    return text[:start] + readme_block() + text[end + len(README_END) :]


def readme_block_of(text: str) -> str | None:
    """The generated block as it stands in `text` (markers included), or None."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(README_END)]


NODE_W, NODE_H, GAP, ARC_STEP, MARGIN = 148, 46, 26, 30, 16


def to_svg(counts: dict[str, int] | None = None) -> str:
    """An arc diagram: states in a row, transitions that move forward as arcs above, those that
    go back (closing a cycle) as arcs below, operator transitions dashed; each arc is as tall
    as the distance it spans so labels do not collide."""
    order = state_order()
    column = {state: i for i, state in enumerate(order)}
    all_edges = edges()
    max_span = max((abs(column[e.target] - column[e.source]) for e in all_edges), default=1)
    top = MARGIN + max_span * ARC_STEP + 14
    width = MARGIN * 2 + len(order) * (NODE_W + GAP) - GAP
    height = top + NODE_H + max_span * ARC_STEP + 30

    def x_of(state: str) -> float:
        return MARGIN + column[state] * (NODE_W + GAP)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="Booking state machine" font-family="system-ui, sans-serif">',
        "<title>Booking state machine (generated from bookings.models.Booking)</title>",
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#475569"/></marker></defs>',
        "<style>.edge{fill:none;stroke:#94a3b8;stroke-width:1.4}"
        ".edge.operator{stroke:#b91c1c;stroke-dasharray:5 3}"
        ".label{font-size:11px;fill:#334155;paint-order:stroke;stroke:#fff;stroke-width:4px;"
        "stroke-linejoin:round}.label.operator{fill:#b91c1c}"
        ".state{font-size:13px;font-weight:600;fill:#fff}"
        ".count{font-size:12px;fill:#fff}</style>",
    ]
    for edge in sorted(all_edges, key=lambda e: -abs(column[e.target] - column[e.source])):
        x1 = x_of(edge.source) + NODE_W / 2
        x2 = x_of(edge.target) + NODE_W / 2
        span = column[edge.target] - column[edge.source]
        klass = "edge operator" if edge.by_operator else "edge"
        label_class = "label operator" if edge.by_operator else "label"
        label = escape(" / ".join(edge.names))
        if span == 1:  # neighbours: a straight arrow between the boxes
            y = top + NODE_H / 2
            a, b = x_of(edge.source) + NODE_W, x_of(edge.target)
            parts.append(
                f'<path class="{klass}" d="M{a},{y} L{b - 1},{y}" marker-end="url(#arrow)">'
                f"<title>{label}</title></path>"
            )
            continue
        # Arcs start and end a little off-centre so that arrows into one box stay apart.
        shift = 10 if span > 0 else -10
        if span > 0:
            y0, h = top, abs(span) * ARC_STEP
            ctrl, apex = y0 - h * 4 / 3, y0 - h
        else:
            y0, h = top + NODE_H, abs(span) * ARC_STEP
            ctrl, apex = y0 + h * 4 / 3, y0 + h
        sx, ex = x1 + shift, x2 - shift
        parts.append(
            f'<path class="{klass}" d="M{sx},{y0} C{sx},{ctrl} {ex},{ctrl} {ex},{y0}" '
            f'marker-end="url(#arrow)"><title>{label}</title></path>'
        )
        parts.append(
            f'<text class="{label_class}" x="{(sx + ex) / 2}" y="{apex + 4}" '
            f'text-anchor="middle">{label}</text>'
        )
    for state in order:
        x = x_of(state)
        colour = STATE_COLOURS.get(state, "#334155")
        parts.append(
            f'<g class="node" data-state="{state}"><rect x="{x}" y="{top}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="8" fill="{colour}"/>'
        )
        text_y = top + (18 if counts is not None else 28)
        parts.append(
            f'<text class="state" x="{x + NODE_W / 2}" y="{text_y}" text-anchor="middle">'
            f"{escape(state)}</text>"
        )
        if counts is not None:
            parts.append(
                f'<text class="count" x="{x + NODE_W / 2}" y="{top + 36}" '
                f'text-anchor="middle">{counts.get(state, 0)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)
