"""The FHIR R4 definitions the hub runs on: resource types, search parameters, the
patient compartment.

The official definitions are loaded once from package data. Search parameters also come
from custom ``SearchParameter`` resources (``fhir/search_definitions.py`` reads them from
the store): the ``REGISTRY`` holds the official and the custom ones with a generation
number, and is replaced as a whole when they change. Every cache derived from the
definitions is declared with ``definitions_cache`` (or ``REGISTRY.on_change``), so that
one ``install`` clears them all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from maillage.errors import IndexPending, Issue, ValidationFailed
from maillage.fhir.indexing.fhirpath import CompiledPath, UnsupportedExpression, compile_expression

log = logging.getLogger(__name__)

FHIR_VERSION = "4.0.1"

# Parameters common to all resources, handled by the search engine itself.
RESOURCE_LEVEL_PARAMS = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    url: str
    expression: str | None
    targets: tuple[str, ...]
    # Per resource type, the compiled extraction; None when the expression is not
    # one the indexer can evaluate yet (the parameter is then not advertised).
    compiled: CompiledPath | None
    # Composite parameters: (component definition url, expression relative to the element).
    components: tuple[tuple[str, str], ...] = ()
    # The id of the SearchParameter resource a custom parameter comes from (None: official).
    custom_id: str | None = None
    # A reference parameter whose rows are another one's restricted to one target type:
    # (that parameter's code, the type). It has no rows of its own (see ``_share_rows``).
    rows_of: tuple[str, str] | None = None

    @property
    def indexed(self) -> bool:
        return self.compiled is not None


def _read_json(name: str) -> Any:
    data = (resources.files("maillage.fhir") / "data" / name).read_bytes()
    return json.loads(data)


@functools.cache
def resource_types() -> frozenset[str]:
    """R4 resource types the hub stores: those of the R4 patient compartment definition
    (which lists every type) that the validation models know."""
    from fhir.resources.R4B import get_fhir_model_class

    compartment = _read_json("compartmentdefinition-patient.json")
    known = set()
    for entry in compartment["resource"]:
        try:
            get_fhir_model_class(entry["code"])
        except (KeyError, ValueError, AttributeError, ImportError):
            continue
        known.add(entry["code"])
    return frozenset(known)


@functools.cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that put it in a Patient's compartment."""
    compartment = _read_json("compartmentdefinition-patient.json")
    return {
        entry["code"]: tuple(entry["param"])
        for entry in compartment["resource"]
        if entry.get("param")
    }


def _expression_for(expression: str, resource_type: str) -> str | None:
    """The union members of ``expression`` that apply to ``resource_type``."""
    parts = [part.strip() for part in _split_union(expression)]
    prefixes = (
        f"{resource_type}.",
        f"({resource_type}.",
        "Resource.",
        "(Resource.",
        "DomainResource.",
        "(DomainResource.",
    )
    kept = [part for part in parts if part.startswith(prefixes) or part == resource_type]
    return " | ".join(kept) if kept else None


def _split_union(expression: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index])
            start = index + 1
    parts.append(expression[start:])
    return parts


def _compile_param(
    definition: dict[str, Any], resource_type: str, custom_id: str | None = None
) -> SearchParam:
    expression = definition.get("expression")
    compiled = None
    if expression and definition["type"] not in ("composite", "special"):
        scoped = _expression_for(expression, resource_type)
        if scoped:
            try:
                compiled = compile_expression(scoped)
            except UnsupportedExpression as error:
                log.debug("search parameter %s not indexed: %s", definition["url"], error)
    return SearchParam(
        code=definition["code"],
        type=definition["type"],
        url=definition["url"],
        expression=expression,
        targets=tuple(definition.get("target", ())),
        compiled=compiled,
        components=tuple(
            (component["definition"], component["expression"])
            for component in definition.get("component", ())
        ),
        custom_id=custom_id,
    )


def base_types(definition: Mapping[str, Any]) -> set[str]:
    """The stored resource types a definition's ``base`` covers (Resource: all)."""
    types = resource_types()
    found: set[str] = set()
    for base in definition.get("base") or ():
        found |= set(types) if base in ("Resource", "DomainResource") else {base} & types
    return found


@functools.cache
def official_params() -> dict[str, dict[str, SearchParam]]:
    """Resource type -> code -> parameter, compiled from the official definitions."""
    bundle = _read_json("search-parameters.json")
    by_type: dict[str, dict[str, SearchParam]] = {name: {} for name in resource_types()}
    for entry in bundle["entry"]:
        definition = entry["resource"]
        for resource_type in base_types(definition):
            param = _compile_param(definition, resource_type)
            by_type[resource_type][param.code] = param
    return {name: _share_rows(name, params) for name, params in by_type.items()}


# A plain path (no union, no function) restricted to one target type.
_RESOLVED_TO = re.compile(r"^([A-Za-z][A-Za-z0-9_.]*)\.where\(resolve\(\) is ([A-Z][A-Za-z]+)\)$")


def _share_rows(resource_type: str, params: dict[str, SearchParam]) -> dict[str, SearchParam]:
    """Mark the reference parameters that are another one of the type restricted to a
    target type: ``patient`` is ``Observation.subject.where(resolve() is Patient)``, and
    ``subject`` is ``Observation.subject``. Their rows would be the other's rows of that
    target type (the extraction gives every row of a reference the type ``resolve() is``
    tests, ``values.references_of``), so they are not written (a fifth of the reference
    rows of a clinical load) and searches read the other's (``reference_rows``). Custom
    parameters cannot take an official code (``compile_custom``): the pairs are fixed."""
    scoped = {
        code: _expression_for(param.expression, resource_type)
        for code, param in params.items()
        if param.type == "reference" and param.indexed and param.expression
    }
    by_expression = {expression: code for code, expression in scoped.items() if expression}
    shared = dict(params)
    for code, expression in scoped.items():
        match = _RESOLVED_TO.match(expression or "")
        if match and (source := by_expression.get(match[1])) is not None:
            shared[code] = dataclasses.replace(params[code], rows_of=(source, match[2]))
    return shared


# -- custom SearchParameter resources ------------------------------------------------------
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_CUSTOM_TYPES = ("string", "token", "date", "reference", "uri", "number", "quantity", "composite")


def is_active(resource: Mapping[str, Any]) -> bool:
    """Only an ``active`` SearchParameter is a definition; draft and retired ones are
    stored like any resource and change nothing."""
    return resource.get("resourceType") == "SearchParameter" and resource.get("status") == "active"


def compile_custom(
    resource: Mapping[str, Any], others: Iterable[Mapping[str, Any]] = ()
) -> dict[str, SearchParam]:
    """Base type -> the parameter an active ``SearchParameter`` defines for it.

    Raises ``ValidationFailed`` (422), with every reason, when the definition cannot be
    served as written: a base the hub does not store, a type it does not index, an
    expression outside the compiled FHIRPath subset (it would be silently unindexed), a
    code an official parameter or another active custom one (``others``) already has for
    the same base (searches would become ambiguous).
    """
    definition = dict(resource)
    problems: list[Issue] = []

    def problem(message: str, where: str) -> None:
        problems.append(Issue(message, expression=f"SearchParameter.{where}"))

    code = definition.get("code") or ""
    kind = definition.get("type")
    if not _CODE.match(code):
        problem(f"code {code!r} must be a letter then letters, digits, '-' or '_'", "code")
    if kind not in _CUSTOM_TYPES:
        problem(f"type {kind!r} is not indexed; use one of {', '.join(_CUSTOM_TYPES)}", "type")
    bases = base_types(definition)
    unknown = [b for b in definition.get("base") or () if not base_types({"base": [b]})]
    if unknown:
        problem(f"base {', '.join(unknown)} is not a resource type this hub stores", "base")
    expression = definition.get("expression")
    if not expression:
        problem("an active custom parameter needs an expression", "expression")
    if problems:
        raise ValidationFailed(problems[0].message, issues=problems)
    assert expression is not None and kind is not None
    definition.setdefault("url", f"urn:maillage:SearchParameter:{resource.get('id')}")
    custom_id = str(resource.get("id")) if resource.get("id") else None
    compiled: dict[str, SearchParam] = {}
    for base in sorted(bases):
        scoped = _expression_for(expression, base)
        if scoped is None:
            problem(f"expression {expression!r} has no part starting with {base}.", "expression")
            continue
        if kind != "composite":
            try:
                compile_expression(scoped)
            except UnsupportedExpression as error:
                problem(
                    f"expression {scoped!r} is outside the FHIRPath subset the indexer "
                    f"compiles ({error}); the parameter would never match anything",
                    "expression",
                )
                continue
        official = official_params()[base].get(code)
        if official is not None:
            problem(
                f"code {code!r} is already the official parameter {official.url} on {base}; "
                "a custom parameter cannot redefine it: choose another code",
                "code",
            )
            continue
        for other in others:
            same = other.get("id") != resource.get("id") and other.get("code") == code
            if same and base in base_types(other):
                problem(
                    f"code {code!r} is already defined on {base} by the active "
                    f"SearchParameter/{other.get('id')}",
                    "code",
                )
        compiled[base] = _compile_param(definition, base, custom_id)
    if kind == "composite" and not problems:
        problems += _composite_problems(definition, compiled, others)
    if problems:
        raise ValidationFailed(problems[0].message, issues=problems)
    return compiled


def _composite_problems(
    definition: dict[str, Any],
    compiled: dict[str, SearchParam],
    others: Iterable[Mapping[str, Any]],
) -> list[Issue]:
    urls = {str(other.get("url")) for other in others}
    problems = []
    if not definition.get("component"):
        problems.append(
            Issue("a composite parameter needs components", "SearchParameter.component")
        )
    for component in definition.get("component") or ():
        url = component.get("definition")
        known = url in urls or any(
            url == param.url for base in compiled for param in official_params()[base].values()
        )
        if not known:
            problems.append(
                Issue(
                    f"component {url!r} is not a search parameter of {', '.join(compiled)}",
                    "SearchParameter.component.definition",
                )
            )
    return problems


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A parameter whose index rows are being (re)built by a reindex job."""

    job_id: str
    status: str
    percent: int | None

    def describe(self, resource_type: str, code: str) -> str:
        state = f"at {self.percent} %" if self.percent is not None else self.status
        if self.status in ("failed", "cancelled"):
            return (
                f"search parameter {code!r} of {resource_type} is not indexed: its reindex "
                f"job {self.job_id} {self.status}; run POST [base]/$reindex or `maillage reindex`"
            )
        return (
            f"search parameter {code!r} of {resource_type} is being indexed "
            f"(reindex job {self.job_id} {state}); results would be incomplete, retry later"
        )


@dataclass(frozen=True)
class Definitions:
    """One generation of the search parameters: official + custom, merged by type."""

    generation: int
    custom: Mapping[str, Mapping[str, SearchParam]]
    by_type: Mapping[str, dict[str, SearchParam]]

    @classmethod
    def build(cls, generation: int, resources: Iterable[Mapping[str, Any]]) -> Definitions:
        """From the active SearchParameter resources of the store; one that does not
        compile (stored by a bulk load, which does not check them) is left out, logged."""
        actives = [resource for resource in resources if is_active(resource)]
        custom: dict[str, dict[str, SearchParam]] = {}
        for resource in actives:
            try:
                params = compile_custom(resource, actives)
            except ValidationFailed as error:
                log.warning("SearchParameter/%s ignored: %s", resource.get("id"), error.message)
                continue
            for base, param in params.items():
                custom.setdefault(base, {})[param.code] = param
        official = official_params()
        by_type = {
            name: {**params, **custom.get(name, {})} if name in custom else params
            for name, params in official.items()
        }
        return cls(generation, custom, by_type)


_F = TypeVar("_F", bound=Callable[..., Any])


class Registry:
    """The definitions this process runs on, and the parameters being indexed.

    ``install`` swaps the whole ``Definitions`` and clears every dependent cache: the one
    place where a change of definitions takes effect in a process. Pending parameters
    change without a new generation (a reindex job ends), so they are kept apart and
    touch no cache.
    """

    def __init__(self) -> None:
        self._current: Definitions | None = None
        self._pending: Mapping[tuple[str, str], Pending] = {}
        self._listeners: list[Callable[[], None]] = []

    def current(self) -> Definitions:
        if self._current is None:
            # -1: nothing read from the store yet (the first refresh always loads).
            self._current = Definitions(-1, {}, official_params())
        return self._current

    @property
    def generation(self) -> int:
        return self.current().generation

    def install(self, definitions: Definitions) -> None:
        self._current = definitions
        for clear in self._listeners:
            clear()

    def on_change(self, clear: Callable[[], None]) -> None:
        """Register a cache to clear when the definitions change."""
        self._listeners.append(clear)

    def set_pending(self, pending: Mapping[tuple[str, str], Pending]) -> None:
        self._pending = pending

    def pending(self, resource_type: str, code: str) -> Pending | None:
        return self._pending.get((resource_type, code)) if self._pending else None


REGISTRY = Registry()


def definitions_cache(function: _F) -> _F:
    """``functools.cache``, cleared whenever the definitions change."""
    cached = functools.cache(function)
    REGISTRY.on_change(cached.cache_clear)
    return cached  # type: ignore[return-value]


def search_params() -> Mapping[str, dict[str, SearchParam]]:
    """Resource type -> code -> parameter, official and custom, of the current generation."""
    return REGISTRY.current().by_type


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return REGISTRY.current().by_type.get(resource_type, {})


def compartment_reference_params() -> dict[str, tuple[str, ...]]:
    """Type (other than Patient) -> ``patient_link_params``: what the access rules follow
    from a row to its patient."""
    found: dict[str, tuple[str, ...]] = {}
    for resource_type in patient_compartment():
        kept = patient_link_params(resource_type)
        if kept and resource_type != "Patient":
            found[resource_type] = kept
    return found


@definitions_cache
def patient_link_params(resource_type: str) -> tuple[str, ...]:
    """The ``param`` of the ``sp_reference`` rows that, pointing at a Patient, put a
    resource of ``resource_type`` in that Patient's compartment (its indexed reference
    parameters named by the compartment, as stored: ``patient`` is read from ``subject``)."""
    stored: dict[str, None] = {}
    params = params_for(resource_type)
    for code in patient_compartment().get(resource_type, ()):
        param = params.get(code)
        if param is None or param.type != "reference" or not param.indexed:
            continue
        rows_param, target_type = reference_rows(resource_type, code)
        if target_type in (None, "Patient"):
            stored[rows_param] = None
    return tuple(stored)


def reference_rows(resource_type: str, code: str) -> tuple[str, str | None]:
    """Where the rows of a reference parameter are: the ``param`` they carry in
    ``sp_reference`` and the target type they must have (None: any). Every search of
    reference rows goes through here (``SearchParam.rows_of``)."""
    param = params_for(resource_type).get(code)
    if param is not None and param.rows_of is not None:
        return param.rows_of
    return code, None


def search_param(resource_type: str, code: str) -> SearchParam | None:
    """The parameter a search names, or None when unknown. Raises ``IndexPending`` (409)
    while its index rows are being built: an answer from half-built rows would be
    silently incomplete."""
    param = params_for(resource_type).get(code)
    if param is not None:
        pending = REGISTRY.pending(resource_type, code)
        if pending is not None:
            raise IndexPending(pending.describe(resource_type, code))
    return param
