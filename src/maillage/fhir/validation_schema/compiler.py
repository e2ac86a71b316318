"""Compile the fhir.resources R4B model metadata into plain validation tables.

For each model class (a resource, a datatype or a backbone element such as
``PatientCommunication``) one ``TypeSchema`` maps every JSON key the model accepts to a
``Rule``: list or single, the primitive checker or the model class of its objects, the
codes of a required binding, the choice group (``value[x]``) it belongs to. Required
elements and choice groups come from the same ``json_schema_extra`` the models' own
validators read (``element_required``, ``one_of_many``, ``one_of_many_required``) and
from pydantic's required fields. Nothing is listed by hand: a new fhir.resources release
brings its definitions with it.

Schemas are compiled on first use of a class and kept; a rule resolves the schema of its
objects the first time it meets one.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from maillage.fhir.validation_schema import primitives

# Rule kinds.
PRIMITIVE = 0  # a JSON scalar checked by ``Rule.check``
COMPLEX = 1  # an object validated against ``Rule.model``'s schema
RESOURCE = 2  # an object naming its own type in resourceType (contained, entry.resource)
PRIMITIVE_EXT = 3  # ``_name``: the id and extensions of the primitive ``name``

# Marker classes of fhir_core's Annotated primitives -> FHIR type name. Looked up by
# exact class: Instant derives from DateTime, PositiveInt from UnsignedInt...
_MARKERS: dict[type, str] = {
    fhir_types.String: "string",
    fhir_types.Markdown: "markdown",
    fhir_types.Code: "code",
    fhir_types.Id: "id",
    fhir_types.Uri: "uri",
    fhir_types.Url: "url",
    fhir_types.Canonical: "canonical",
    fhir_types.Oid: "oid",
    fhir_types.Date: "date",
    fhir_types.DateTime: "dateTime",
    fhir_types.Instant: "instant",
    fhir_types.Time: "time",
    fhir_types.Decimal: "decimal",
    fhir_types.Base64Binary: "base64Binary",
    fhir_types.Xhtml: "xhtml",
}
_INTEGER_MARKERS: dict[type, str] = {
    fhir_types.Integer: "integer",
    fhir_types.UnsignedInt: "unsignedInt",
    fhir_types.PositiveInt: "positiveInt",
    fhir_types.Integer64: "integer64",
}


@dataclass(eq=False, slots=True)
class Rule:
    """How one JSON key of a type is validated."""

    key: str
    kind: int
    is_list: bool
    fhir_type: str  # a primitive's FHIR type, or the model's name
    check: primitives.Checker | None = None
    model: type[FHIRAbstractModel] | None = None
    enum: frozenset[str] | None = None
    choice: str | None = None  # the choice group, "value" for valueString
    # For a primitive ``name``: its ``_name`` key; for ``_name``: the primitive's key.
    sibling: str | None = None
    schema: TypeSchema | None = None  # resolved on first use (COMPLEX, PRIMITIVE_EXT)
    # A single primitive outside any choice group and without a binding: only ``check``.
    plain: bool = False


@dataclass(eq=False, slots=True)
class TypeSchema:
    name: str
    model: type[FHIRAbstractModel]
    is_resource: bool
    rules: dict[str, Rule] = field(default_factory=dict)
    # (key, the ``_key`` whose extensions may stand in for a missing primitive, or None)
    required: tuple[tuple[str, str | None], ...] = ()
    # choice group ("value") -> its keys ("valueString", ...)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the groups of which one member is required
    required_choices: tuple[str, ...] = ()


_SCHEMAS: dict[type, TypeSchema] = {}


def schema_of(model: type[FHIRAbstractModel]) -> TypeSchema:
    schema = _SCHEMAS.get(model)
    if schema is None:
        schema = _SCHEMAS[model] = compile_model(model)
    return schema


def child_schema(rule: Rule) -> TypeSchema:
    schema = rule.schema
    if schema is None:
        assert rule.model is not None
        schema = rule.schema = schema_of(rule.model)
    return schema


def compile_model(model: type[FHIRAbstractModel]) -> TypeSchema:
    schema = TypeSchema(
        name=model.get_resource_type(), model=model, is_resource=model.has_resource_base()
    )
    required: list[tuple[str, str | None]] = []
    choices: dict[str, tuple[list[str], bool]] = {}
    for name, info in model.model_fields.items():
        if name == FHIR_COMMENTS_FIELD_NAME:
            continue  # a DSTU2 leftover: not part of FHIR JSON
        key = info.alias or name
        rule = _rule(key, info)
        schema.rules[key] = rule
        extra = _extra(info)
        if info.is_required() or extra.get("element_required"):
            required.append((key, None))
        group = extra.get("one_of_many")
        if isinstance(group, str):
            rule.choice = group
            members, is_required = choices.setdefault(group, ([], False))
            members.append(key)
            choices[group] = (members, is_required or extra.get("one_of_many_required") is True)
    for key, rule in schema.rules.items():
        rule.plain = rule.kind == PRIMITIVE and not rule.is_list
        rule.plain = rule.plain and rule.enum is None and rule.choice is None
        if rule.kind == PRIMITIVE_EXT:
            rule.sibling = key[1:]
            value_rule = schema.rules.get(key[1:])
            if value_rule is not None:
                value_rule.sibling = key
    schema.required = tuple((key, schema.rules[key].sibling) for key, _ in required)
    schema.choices = {group: tuple(members) for group, (members, _) in choices.items()}
    schema.required_choices = tuple(group for group, (_, needed) in choices.items() if needed)
    return schema


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _rule(key: str, info: FieldInfo) -> Rule:
    leaf, is_list = _unwrap(info.annotation)
    codes = required_codes(info)
    if isinstance(leaf, type) and issubclass(leaf, fhir_types.FhirBase):
        model = leaf.get_model_klass()
        if issubclass(leaf, fhir_types.FhirElementOrResourceBase):
            return Rule(key, RESOURCE, is_list, model.get_resource_type(), model=model)
        kind = PRIMITIVE_EXT if model.get_resource_type() == "FHIRPrimitiveExtension" else COMPLEX
        return Rule(key, kind, is_list, model.get_resource_type(), model=model)
    fhir_type, check = primitive_checker(leaf)
    return Rule(key, PRIMITIVE, is_list, fhir_type, check=check, enum=codes)


def required_codes(info: FieldInfo) -> frozenset[str] | None:
    """The codes of a required binding, when the model states them in full.

    fhir.resources' ``enum_values`` are parsed from the element's short description
    (its ``title``), and some of those are truncated ("registered | preliminary | final |
    amended +") or prose ("formats supported (xml | json | ttl | mime type)"): a list is
    enforced only when the title is exactly ``code | code | ...`` (the last code may be
    followed by `` - explanation`` or ``(explanation)``) and says the same as
    ``enum_values``.
    """
    enum = _extra(info).get("enum_values")
    if not isinstance(enum, list):
        return None
    segments = [segment.strip() for segment in (info.title or "").split("|")]
    codes = []
    for index, segment in enumerate(segments):
        code, _, rest = segment.partition(" ")
        last = index == len(segments) - 1
        if rest and not (last and (rest.startswith("- ") or rest.startswith("("))):
            return None
        codes.append(code)
    if len(codes) < 2 or "+" in codes or set(codes) != set(enum):
        return None
    return frozenset(codes)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``Optional[List[Optional[Annotated[str, Code()]]]]`` -> (Annotated[...], True)."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(kept) != 1:
                return annotation, is_list  # a real union: left to the fallback
            annotation = kept[0]
        elif origin is list:
            is_list, annotation = True, typing.get_args(annotation)[0]
        else:
            return annotation, is_list


def primitive_checker(leaf: Any) -> tuple[str, primitives.Checker]:
    if leaf is bool:
        return "boolean", primitives.check_boolean
    if typing.get_origin(leaf) is typing.Annotated:
        for marker in typing.get_args(leaf)[1:]:
            name = _MARKERS.get(type(marker))
            if name is not None:
                return name, primitives.CHECKERS[name]
            name = _INTEGER_MARKERS.get(type(marker))
            if name is not None:
                low, high = marker.min_length, marker.max_length
                return name, primitives.integer_checker(name, low, high)
            if getattr(marker, "uuid_version", None) == 4:
                return "uuid", primitives.check_uuid
    return repr(leaf), model_fallback(leaf)


def model_fallback(leaf: Any) -> primitives.Checker:
    """A primitive annotation this module does not know: ask pydantic, as the models do."""
    adapter: TypeAdapter[Any] = TypeAdapter(leaf)

    def check(value: Any) -> str | None:
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            return "; ".join(problem["msg"] for problem in error.errors())
        return None

    return check


def all_model_classes() -> list[type[FHIRAbstractModel]]:
    """Every R4B model class reachable from the resource types (for warm-up and tests)."""
    from fhir.resources.R4B import get_fhir_model_class

    from maillage.fhir.definitions import resource_types

    seen: dict[type, None] = {}
    pending = [get_fhir_model_class(name) for name in sorted(resource_types())]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen[model] = None
        for rule in schema_of(model).rules.values():
            if rule.model is not None and rule.model not in seen:
                pending.append(rule.model)
    return list(seen)
