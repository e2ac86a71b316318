"""Reading a search's result parameters (``_count``, ``_sort``, ``_include``, ``_summary``...).

Filters (everything else) are left to the condition builder. A result parameter with
a value the engine does not support is, like an unknown parameter, dropped under
lenient handling (and left out of the self link) and refused under strict handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maillage.errors import InvalidRequest, UnsupportedParameter
from maillage.fhir.definitions import params_for, resource_types

# Parameters that shape results rather than select them.
CONTROL = {
    "_count",
    "_offset",
    "_page",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_type",
    "_format",
    "_pretty",
}
SUMMARY_MODES = ("true", "false", "count", "data", "text")
TOTAL_MODES = ("none", "estimate", "accurate")
# How the self link keeps each control (``_format``/``_pretty``/``_offset``/``_page`` are
# the links' own business).
LINKED = {"_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude", "_type"}


@dataclass(frozen=True)
class Include:
    """``_include`` (forward) or ``_revinclude`` (reverse): ``source:param[:target]``.

    ``param`` None is the ``*`` wildcard (every reference parameter of ``source``);
    ``source`` None is ``*`` alone (any type).
    """

    source: str | None
    param: str | None
    target: str | None
    reverse: bool
    iterate: bool


@dataclass
class ResultParams:
    count: int
    offset: int = 0
    # The keyset cursor of a page link (``paging``), opaque to the client.
    page: str | None = None
    sort: str | None = None
    total: str = "accurate"
    summary: str | None = None
    elements: list[str] | None = None
    includes: list[Include] = field(default_factory=list)
    types: list[str] | None = None
    used: list[tuple[str, str]] = field(default_factory=list)


def _refuse(strict: bool, message: str) -> None:
    if strict:
        raise UnsupportedParameter(message)


def parse_include(name: str, value: str) -> Include | None:
    base, _, modifier = name.partition(":")
    if modifier not in ("", "iterate", "recurse"):
        return None
    reverse = base == "_revinclude"
    iterate = modifier != ""
    if value == "*":
        return Include(None, None, None, reverse, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in resource_types():
        return None
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in resource_types():
        return None
    if code == "*":
        return Include(source, None, target, reverse, iterate)
    param = params_for(source).get(code)
    if param is None or param.type != "reference" or not param.indexed:
        return None
    if target is not None and param.targets and target not in param.targets:
        return None
    return Include(source, code, target, reverse, iterate)


def parse_results(
    params: list[tuple[str, str]], *, strict: bool, default_count: int, max_count: int
) -> ResultParams:
    result = ResultParams(count=default_count)
    for name, value in params:
        base = name.partition(":")[0]
        if base not in CONTROL:
            continue
        kept = True
        if base == "_count":
            if not value.isdigit():
                raise InvalidRequest(f"_count must be a non-negative integer, not {value!r}")
            result.count = min(int(value), max_count)
        elif base == "_offset":
            if not value.isdigit():
                raise InvalidRequest(f"_offset must be a non-negative integer, not {value!r}")
            result.offset = int(value)
            kept = False
        elif base == "_page":
            result.page = value or None
            kept = False
        elif base == "_sort":
            result.sort = value
            kept = False  # the sort builder keeps the keys it understood
        elif base == "_total":
            kept = value in TOTAL_MODES
            if kept:
                result.total = value
            else:
                _refuse(strict, f"_total={value!r} is not one of {', '.join(TOTAL_MODES)}")
        elif base == "_summary":
            kept = value in SUMMARY_MODES
            if kept:
                result.summary = None if value == "false" else value
            else:
                _refuse(strict, f"_summary={value!r} is not one of {', '.join(SUMMARY_MODES)}")
        elif base == "_elements":
            result.elements = [part.strip() for part in value.split(",") if part.strip()]
        elif base in ("_include", "_revinclude"):
            include = parse_include(name, value)
            kept = include is not None
            if include is None:
                _refuse(strict, f"{name}={value!r} is not a supported include")
            else:
                result.includes.append(include)
        elif base == "_type":
            types = [part.strip() for part in value.split(",") if part.strip()]
            unknown = [part for part in types if part not in resource_types()]
            if unknown:
                raise InvalidRequest(f"_type names unknown resource types: {', '.join(unknown)}")
            result.types = sorted(set(result.types or []) | set(types))
        else:
            kept = False
        if kept and base in LINKED:
            result.used.append((name, value))
    return result
