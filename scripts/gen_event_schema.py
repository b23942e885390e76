"""Regenerate the camera event contract's published forms from ``edge_client.events``:

- ``docs/event.schema.json``: the JSON Schema (both kinds, discriminated on ``kind``);
- the README's event table, between ``<!-- event-table:begin -->`` and ``<!-- event-table:end -->``.

    python scripts/gen_event_schema.py           # rewrite both
    python scripts/gen_event_schema.py --check   # exit 1 when either is stale (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_client.events import event_json_schema, schema_table  # noqa: E402

SCHEMA_PATH = ROOT / "docs" / "event.schema.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- event-table:begin -->", "<!-- event-table:end -->"


def schema_text() -> str:
    return json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n"


def readme_text(readme: str) -> str:
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{README}: markers {BEGIN} / {END} not found")
    return f"{head}{BEGIN}\n{schema_table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when a file is stale")
    args = ap.parse_args(argv)
    readme = README.read_text()
    wanted = {SCHEMA_PATH: schema_text(), README: readme_text(readme)}
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)} (run python scripts/gen_event_schema.py)")
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
