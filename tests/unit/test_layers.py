"""The import layering of docs/design.md holds: every import points down.

Walks the source with `ast` (nothing is imported), so a new upward import fails here
before it turns into a cycle or a hub that knows about sockets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pubsocket"

# Lower numbers are lower layers; a module may import its own layer's package or lower.
RANK = {
    "errors": 0, "framing": 0,
    "centrifugo_config": 0.5,  # a Centrifugo file's JSON -> Settings fields (pure)
    "envvars": 0.5,  # the environment variables' names and parsers (pure; config reads)
    "config": 1,
    "log": 2, "brokers": 2, "auth": 2, "presence": 2,
    "protocol": 3,
    "codecs": 4,
    "hub": 5,
    "outbox": 5.5,  # the relay runs inside `serve` (web) on the hub's broker and rules
    "protocols": 5.5,  # each implements the hub's session hook; web plugs it in
    "ops": 5.7,  # the HTTP doors' operations (web calls them) over hub/operations
    "web": 6,
    "server": 7,
    "client": 8, "asgi": 8, "publisher": 8,
    "scaffold": 8, "cli": 9, "__init__": 10, "__main__": 10,
}
# Layers that may import only what is listed, whatever their rank.
ONLY = {"client": {"protocol", "errors", "client"}}


def _layer(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level pubsocket layers imported by `path` (absolute or relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    depth = len(path.relative_to(SRC).parts) - 1  # folders below pubsocket/
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to pubsocket/, then name the first part
                climb = node.level - 1
                if climb < depth:
                    found.add(path.relative_to(SRC).parts[0].removesuffix(".py"))
                    continue
                parts = (node.module or "").split(".")
                names = [parts[0]] if parts[0] else [a.name for a in node.names]
                found.update(names)
            elif node.module and node.module.split(".")[0] == "pubsocket":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pubsocket":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    layer = _layer(path)
    assert layer in RANK, f"{layer} has no rank: add it to RANK and docs/design.md"
    for target in _imports(path):
        assert target in RANK, f"{path.name} imports unknown layer {target}"
        if layer in ONLY:
            assert target in ONLY[layer], f"{layer} may not import {target}"
        assert target == layer or RANK[target] < RANK[layer], (
            f"{path.relative_to(SRC)} ({layer}) imports {target}: upward or sideways")


def test_the_walker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    """The check can fail: an upward import written either way is found."""
    found = _imports(SRC / "hub" / "core.py")
    assert {"brokers", "codecs", "protocol", "config"} <= found
    assert "web" not in found and "server" not in found


# The wire seam (docs/design.md "The wire"): the hub frames through opaque wires, so
# no module of the hub (or of the protocols below it) may know WebSocket framing.
FRAMING_FREE = ("hub", "codecs", "protocols", "protocol", "brokers", "presence")


def _third_party(path: Path) -> set[str]:
    """Top-level names of the non-pubsocket modules `path` imports."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if _layer(p) in FRAMING_FREE],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_the_hub_knows_no_websocket_framing(path: Path) -> None:
    assert "websockets" not in _third_party(path), f"{path.relative_to(SRC)} imports websockets"
    assert "framing" not in _imports(path), f"{path.relative_to(SRC)} imports pubsocket.framing"


def test_the_framing_check_can_fail() -> None:
    """`framing.py` itself imports websockets, and the transport (server/frames.py)
    imports framing."""
    assert "websockets" in _third_party(SRC / "framing.py")
    assert "framing" in _imports(SRC / "server" / "frames.py")


# The operations seam (docs/design.md "The seams", Operations): every front door reaches
# the same checks and reads, in the hub layer so that the socket commands can use them.
SHARED_OPERATIONS = SRC / "hub" / "operations.py"
FRONT_DOORS = ("hub/handlers.py", "hub/replies.py", "hub/publishing.py", "ops/api.py",
               "publisher.py")


def _imports_operations(path: Path) -> bool:
    """True when `path` imports `hub.operations` (as a module or names from it)."""
    tree = ast.parse(path.read_text(), str(path))
    inside_hub = path.parent.name == "hub"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module.endswith("hub.operations") or (
                    module.endswith("hub") and "operations" in names):
                return True
            if inside_hub and node.level == 1 and (
                    module == "operations" or (not module and "operations" in names)):
                return True
    return False


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_every_front_door_uses_the_shared_operations(door: str) -> None:
    assert _imports_operations(SRC / door), f"{door} does not use hub/operations.py"


def test_the_shared_operations_sit_below_ops() -> None:
    """The hub may not import `ops` (above it), so the shared part lives in the hub."""
    assert _layer(SHARED_OPERATIONS) == "hub" and RANK["hub"] < RANK["ops"]
    assert "ops" not in _imports(SHARED_OPERATIONS)
    assert not _imports_operations(SRC / "hub" / "topic.py")  # the check can fail
