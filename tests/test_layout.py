"""The import rule of the process layout (docs/architecture.md), checked on the source.

- ``edge_client`` (the edge process) never imports ``gate``;
- ``gate`` (the gate process) imports from ``edge_client`` only its event contract,
  ``edge_client.events``;
- ``alpr_common`` (shared by both processes) imports none of the process packages;
- the serving runtime (``ensemble`` outside ``ensemble/ops``) imports neither the ops
  tooling nor the edge or the gate;
- the edge runtime does not import the demo / evaluation tooling (``edge_client/tools``),
  except the CLI that runs that tooling;
- ``alpr_api`` (the HTTP API process) imports from ``edge_client`` only its contracts, its
  Triton client, its plate post-processing and the photo path of ``alpr-evaluate``
  (``edge_client.tools.evaluate``: the API reads a photo as the evaluator does), from
  ``ensemble`` no ops tooling, and nothing of the gate or training; no package imports
  ``alpr_api``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path, root: Path = ROOT) -> list[str]:
    """Absolute module names ``path`` imports (relative imports resolved)."""
    package = list(path.relative_to(root).parts[:-1])
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{mod}.{a.name}" for a in node.names] if not node.module else [mod]
                out += names
            elif node.module:
                out.append(node.module)
    return out


def violations(
    folder: str, allowed: object, *, skip: tuple[str, ...] = (), root: Path = ROOT
) -> list[str]:
    bad = []
    for path in sorted((root / folder).rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel.startswith(skip):
            continue
        for mod in imports_of(path, root):
            if not allowed(mod):  # type: ignore[operator]
                bad.append(f"{rel} imports {mod}")
    return bad


def _top(mod: str) -> str:
    return mod.split(".")[0]


API_FROM_EDGE = ("edge_client.contracts", "edge_client.triton_client", "edge_client.plates",
                 "edge_client.tools.evaluate")  # fmt: skip


def _api_may_import(mod: str) -> bool:
    if _top(mod) in {"gate", "training"} or mod.startswith("ensemble.ops"):
        return False
    return _top(mod) != "edge_client" or any(
        mod == m or mod.startswith(m + ".") for m in API_FROM_EDGE
    )


RULES = [
    ("edge_client", lambda m: _top(m) != "gate", ()),
    (
        "gate",
        lambda m: _top(m) != "edge_client" or m == "edge_client.events",
        (),
    ),
    ("alpr_common", lambda m: _top(m) not in {"edge_client", "gate", "ensemble", "training"}, ()),
    (
        "ensemble",
        lambda m: (
            _top(m) not in {"edge_client", "gate", "training"} and not m.startswith("ensemble.ops")
        ),
        ("ensemble/ops",),
    ),
    (
        "edge_client",
        lambda m: not m.startswith("edge_client.tools"),
        ("edge_client/tools", "edge_client/cli/evaluate.py"),
    ),
    ("alpr_api", _api_may_import, ()),
    *[
        (folder, lambda m: _top(m) != "alpr_api", ())
        for folder in ("alpr_common", "edge_client", "ensemble", "gate", "training")
    ],
]


@pytest.mark.parametrize(("folder", "allowed", "skip"), RULES, ids=lambda r: str(r)[:40])
def test_import_rule(folder: str, allowed: object, skip: tuple[str, ...]) -> None:
    assert violations(folder, allowed, skip=skip) == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself catches both import forms (so an empty list above means something)."""
    (tmp_path / "gate" / "sub").mkdir(parents=True)
    (tmp_path / "gate" / "probe.py").write_text(
        "from edge_client.state import keys\nimport edge_client.pipeline\n"
        "from edge_client.events import parse_event\n"
    )
    (tmp_path / "gate" / "sub" / "rel.py").write_text("from ..x import y\nfrom . import z\n")
    assert violations("gate", RULES[1][1], root=tmp_path) == [
        "gate/probe.py imports edge_client.state",
        "gate/probe.py imports edge_client.pipeline",
    ]
    assert imports_of(tmp_path / "gate" / "sub" / "rel.py", tmp_path) == ["gate.x", "gate.sub.z"]
