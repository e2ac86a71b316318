"""Re-pointing references inside a resource's JSON, remembering where (for unmerge).

Pure. A path is the list of keys and list positions from the resource's root to a
``Reference.reference`` string, e.g. ``["subject", "reference"]`` or
``["participant", 0, "individual", "reference"]``.
"""

from __future__ import annotations

import copy
from typing import Any

Path = list[str | int]


def repoint(body: dict[str, Any], old: str, new: str) -> tuple[dict[str, Any], list[Path]]:
    """A copy of ``body`` where every ``reference`` equal to ``old`` is ``new``, and the
    paths changed."""
    result = copy.deepcopy(body)
    paths: list[Path] = []
    _walk(result, [], old, new, paths)
    return result, paths


def restore(body: dict[str, Any], paths: list[Path], current: str, previous: str) -> dict[str, Any]:
    """A copy of ``body`` where the references at ``paths`` that still say ``current``
    say ``previous`` again (a path the resource no longer has, or that was changed since
    by someone else, is left as it is)."""
    result = copy.deepcopy(body)
    for path in paths:
        parent: Any = result
        for step in path[:-1]:
            parent = _step(parent, step)
            if parent is None:
                break
        last = path[-1]
        if isinstance(parent, dict) and isinstance(last, str) and parent.get(last) == current:
            parent[last] = previous
    return result


def _step(node: Any, step: str | int) -> Any:
    if isinstance(step, int):
        return node[step] if isinstance(node, list) and 0 <= step < len(node) else None
    return node.get(step) if isinstance(node, dict) else None


def _walk(node: Any, path: Path, old: str, new: str, found: list[Path]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and value == old:
                node[key] = new
                found.append([*path, key])
            else:
                _walk(value, [*path, key], old, new, found)
    elif isinstance(node, list):
        for position, value in enumerate(node):
            _walk(value, [*path, position], old, new, found)
