"""What each process imports, read statically from the sources (``ast``): the modules a
process reaches from its roots through first-party imports, at the top of a module or
inside its functions. Used by the packaging tests (extras, Docker images)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("alpr_common", "alpr_api", "edge_client", "ensemble", "gate", "training")
PROVIDED = {"triton_python_backend_utils"}  # by Triton's Python backend, not by pip

# Outside the processes' runtime: the demo video's text rendering (Pillow, tests and demos
# only), the TensorRT engine build and the YOLO export (each in its own environment).
NOT_RUNTIME = ("alpr_common.demo_render", "ensemble.ops.engine_build",
               "ensemble.ops.yolo_export")  # fmt: skip


def package_modules(package: str, *, skip: Iterable[str] = ()) -> list[str]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not any(name == s or name.startswith(s + ".") for s in skip):
            out.append(name)
    return out


def model_py_imports() -> list[str]:
    """What Triton's ``model.py`` files import (they run in the server process)."""
    out = []
    for path in sorted((REPO / "model_repository").glob("*/1/model.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.append(node.module)
            elif isinstance(node, ast.Import):
                out += [a.name for a in node.names]
    return out


PROCESSES: dict[str, list[str]] = {
    # edge-client, alpr-cache, alpr-evaluate
    "edge": [
        *package_modules("edge_client", skip=["edge_client.tools"]),
        "edge_client.cli.evaluate",
    ],
    "gate": package_modules("gate"),
    "api": package_modules("alpr_api"),
    "server": [*model_py_imports(), *package_modules("ensemble", skip=NOT_RUNTIME)],
}


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imports_of(name: str, path: Path) -> set[str]:
    """Every module ``path`` (the module ``name``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}")}
    return out


def reach(roots: Iterable[str], skip: Iterable[str] = NOT_RUNTIME) -> set[str]:
    """Every module reached from ``roots`` (first-party ones followed, parents included)."""
    skipped, seen = set(skip), set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in skipped:
            continue
        seen.add(name)
        if name.split(".")[0] not in FIRST_PARTY:
            continue
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        path = module_file(name)
        if path is not None:
            todo += imports_of(name, path)
    return seen


def third_party_imports(process: str) -> set[str]:
    """Top-level non-stdlib distributions' modules the process imports."""
    tops = {m.split(".")[0] for m in reach(PROCESSES[process])}
    return {
        t for t in tops
        if t not in FIRST_PARTY and t not in sys.stdlib_module_names and t not in PROVIDED
    }  # fmt: skip


def first_party_packages(process: str) -> set[str]:
    """The project's top-level packages the process needs (what its image must copy)."""
    return {m.split(".")[0] for m in reach(PROCESSES[process])} & set(FIRST_PARTY)
