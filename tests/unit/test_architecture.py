"""The tree's boundaries (docs/internals/architecture.md): what each folder may import,
and no import cycles between modules. Imports inside functions count too: a lazy import
hides a cycle, it does not remove it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from common import ROOT

import core

PACKAGES = ("core", "server")
# What code outside core/ may import of core: the package's exports, and the public
# modules of shared vocabulary and domain logic. Never the engine's insides or the
# compiled module.
CORE_PUBLIC_MODULES = ("core.records", "core.rules")
CORE_PUBLIC_PACKAGES = ("core.domain",)
# Which top folder may import which (a layer imports only layers below it).
LAYERS = {
    "core.records": set(),
    "core.idsets": set(),
    "core.rules": {"core.records"},
    "core.engine": {"core.records", "core.rules", "core.idsets"},
    "core.domain": {"core.records", "core.rules", "core.engine", "core.idsets"},
    "server.mms_pb": set(),
    "server.rpc": {"core", "server.mms_pb", "server.client"},
    "server.client": {"server.mms_pb", "server.rpc"},
    "server.cli": {"core", "server.mms_pb", "server.client", "server.rpc", "server.tools"},
    "server.tools": {"core", "server.mms_pb", "server.client", "server.rpc"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def imports() -> dict[str, list[tuple[str, str | None, int]]]:
    """module -> [(imported module, imported name or None, line)] for our packages."""
    out: dict[str, list[tuple[str, str | None, int]]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "mms_pb" in path.parts:
                continue
            mod = module_name(path)
            found = out.setdefault(mod, [])
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.split(".")[0] in PACKAGES:
                            found.append((a.name, None, node.lineno))
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if node.module.split(".")[0] in PACKAGES:
                        for a in node.names:
                            found.append((node.module, a.name, node.lineno))
    return out


def resolve(target: str, name: str | None, modules: set[str]) -> str:
    """`from pkg import mod` names a module; `from mod import name` the module itself."""
    if name is not None and f"{target}.{name}" in modules:
        return f"{target}.{name}"
    return target


def test_server_uses_only_cores_public_names():
    bad = []
    exported = set(core.__all__)
    for mod, found in imports().items():
        if not mod.startswith("server"):
            continue
        for target, name, line in found:
            if not target.startswith("core"):
                continue
            full = resolve(target, name, set(imports()))
            if full == "core":
                if name not in exported:
                    bad.append(f"{mod}:{line}: core.{name} is not exported by core")
            elif full in CORE_PUBLIC_MODULES or full.startswith(CORE_PUBLIC_PACKAGES):
                if name is not None and name.startswith("_"):
                    bad.append(f"{mod}:{line}: {full}.{name} is private")
            else:
                bad.append(f"{mod}:{line}: {full} is core's inside (use core's exports)")
    assert not bad, "\n".join(bad)


def _layer(mod: str) -> str | None:
    for layer in sorted(LAYERS, key=len, reverse=True):
        if mod == layer or mod.startswith(layer + "."):
            return layer
    return None


def test_each_folder_imports_only_the_layers_below_it():
    bad = []
    for mod, found in imports().items():
        own = _layer(mod)
        if own is None:
            continue
        for target, name, line in found:
            full = resolve(target, name, set(imports()))
            other = _layer(full) or full
            if other == own or other in ("core", "server") and full == other and own.startswith(other):
                continue
            allowed = LAYERS[own]
            if other not in allowed and not any(other.startswith(a + ".") or other == a
                                                for a in allowed):
                bad.append(f"{mod}:{line}: {own} may not import {full}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    mods = set(imports())
    for mod, found in imports().items():
        deps = graph.setdefault(mod, set())
        for target, name, _line in found:
            full = resolve(target, name, mods)
            if full in mods and full != mod and not mod.startswith(full + "."):
                deps.add(full)
    # A package's __init__ that re-exports its own modules is not a cycle with them.
    for mod in graph:
        graph[mod] = {d for d in graph[mod] if not d.startswith(mod + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
