"""Before and after in one sitting: the same `make bench` scenarios run from two checkouts of
this repository (say, main before a change and main after it), in interleaved rounds, with the
DBOS peer between them in every round; each ratio is taken within its round.

    .venv/bin/python bench/ab.py --before /path/to/old/checkout --only remote,saga,rate

Each checkout needs its own .venv (make install there). Both use the same bench database and
Redis databases, one after the other. Prints one line per round and the medians.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(checkout: Path, only: str, args: argparse.Namespace, out: Path) -> dict:
    """One run of `checkout`'s bench/run.py; its scenarios' figures."""
    cmd = [str(checkout / ".venv" / "bin" / "python"), str(checkout / "bench" / "run.py"),
           "--only", only, "--sagas", str(args.sagas), "--database", args.database,
           "--redis-db", str(args.redis_db), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    (result,) = out.glob("*.json")
    scenarios = json.loads(result.read_text())["scenarios"]
    result.unlink()
    return scenarios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="the other checkout")
    p.add_argument("--after", type=Path, default=ROOT, help="this checkout by default")
    p.add_argument("--only", default="remote,saga", help="the scenarios compared")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sagas", type=int, default=2000)
    p.add_argument("--database", default="bookingops_ab")
    p.add_argument("--redis-db", type=int, default=7)
    args = p.parse_args(argv)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(1, args.rounds + 1):
            figures: dict[str, dict] = {}
            for side, checkout in (("before", args.before), ("after", args.after)):
                out = Path(tmp) / f"{side}-{number}"
                figures[side] = bench(checkout.resolve(), args.only, args, out)
            dbos = bench(args.after.resolve(), "dbos", args, Path(tmp) / f"dbos-{number}")
            figures["dbos"] = next(iter(dbos.values()), {})
            rounds.append(figures)
            print(f"round {number}: {json.dumps(figures)}", flush=True)
    print()
    print("| scenario | figure | before | after | after/before | before/DBOS | after/DBOS |")
    print("|---|---|---|---|---|---|---|")
    for name in rounds[0]["after"]:
        for key in ("sagas_per_s", "p50_ms", "p95_ms", "cpu_ms_per_saga"):
            b = [r["before"].get(name, {}).get(key) for r in rounds]
            a = [r["after"].get(name, {}).get(key) for r in rounds]
            d = [r["dbos"].get("sagas_per_s") for r in rounds]
            if any(x is None for x in a + b):
                continue
            if isinstance(a[0], dict):  # CPU by process kind: the worker's
                a, b = [x.get("worker") for x in a], [x.get("worker") for x in b]
                key = "worker CPU ms/saga"
            ratio = _median([x / y for x, y in zip(a, b, strict=True)])
            row = [name, key, _fmt(b), _fmt(a), f"{ratio:.2f}"]
            if key == "sagas_per_s" and all(d):
                row += [f"{_median([x / y for x, y in zip(b, d, strict=True)]):.2f}",
                        f"{_median([x / y for x, y in zip(a, d, strict=True)]):.2f}"]  # fmt: skip
            else:
                row += ["", ""]
            print("| " + " | ".join(row) + " |")
    print(f"\nDBOS sagas/s by round: {[r['dbos'].get('sagas_per_s') for r in rounds]}")
    return 0


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def _fmt(values: list) -> str:
    return " / ".join(f"{x:g}" for x in values)


if __name__ == "__main__":
    sys.exit(main())
