"""SMART on FHIR scopes (v1 and v2): parse them, and say what a set of them allows.

A resource scope is ``context/Type.permissions``:

- the context is ``patient`` (the patient in context only: the access policy restricts to
  that patient's compartment), ``user`` (whatever the signed-in user may see) or
  ``system`` (a backend service, no user);
- the type is a FHIR resource type or ``*``;
- v1 permissions are ``read`` (read, vread, history, search), ``write`` (create, update,
  delete) or ``*``; v2 permissions are letters of ``cruds`` in that order — create, read
  (read, vread, instance history), update, delete, search (type and system search and
  history) — optionally followed by ``?param=value`` restrictions (``patient/Observation.rs
  ?category=laboratory``).

Other scopes (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``...) are kept
as they are and grant nothing here. Pure: no SQL, no web.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from maillage.errors import InvalidRequest
from maillage.security.policy import Action

CONTEXTS = ("patient", "user", "system")
V2_LETTERS = "cruds"
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{1,63})"
    r"\.(?P<permissions>read|write|\*|[cruds]{1,5})(?:\?(?P<query>\S+))?$"
)
_OTHER = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 scope-token characters


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope; ``letters`` is a subset of ``cruds`` whatever the version."""

    text: str
    context: str
    resource_type: str  # a type or "*"
    letters: str
    version: int  # 1 or 2
    restrictions: tuple[tuple[str, str], ...] = ()

    def covers_type(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def grants(self, letter: str, resource_type: str) -> bool:
        return letter in self.letters and self.covers_type(resource_type)

    def covers(self, other: ResourceScope) -> bool:
        """Whether every access ``other`` grants is granted by this scope too."""
        return (
            self.context == other.context
            and (self.resource_type == "*" or self.resource_type == other.resource_type)
            and set(other.letters) <= set(self.letters)
            and set(self.restrictions) <= set(other.restrictions)
        )


def parse_scope(text: str) -> ResourceScope | None:
    """A resource scope, or ``None`` for another kind of scope (``openid``...).

    Raises ``InvalidRequest`` for a string that looks like a resource scope but is wrong
    (``user/Observation.cr ud``, ``patient/Observation.sr``, ``system/observation.read``).
    """
    if not _OTHER.match(text):
        raise InvalidRequest(f"{text!r} is not a scope: no spaces, quotes or backslashes")
    head = text.split("/", 1)[0]
    if head not in CONTEXTS or "." not in text:
        return None
    match = _SCOPE.match(text)
    if match is None:
        raise InvalidRequest(
            f"{text!r} is not a SMART scope like patient/Observation.read (v1) or "
            "user/Observation.rs (v2): context patient|user|system, a resource type "
            "(capitalised) or *, then read|write|* or letters of cruds in that order"
        )
    permissions = match["permissions"]
    if permissions in _V1_PERMISSIONS:
        letters, version = _V1_PERMISSIONS[permissions], 1
    else:
        if permissions != "".join(letter for letter in V2_LETTERS if letter in permissions):
            raise InvalidRequest(
                f"{text!r}: v2 permissions are letters of 'cruds', each once, in that order"
            )
        letters, version = permissions, 2
    restrictions: tuple[tuple[str, str], ...] = ()
    if match["query"]:
        if version == 1:
            raise InvalidRequest(f"{text!r}: only v2 scopes carry ?restrictions")
        restrictions = tuple(sorted(parse_qsl(match["query"], keep_blank_values=True)))
    return ResourceScope(
        text=text,
        context=match["context"],
        resource_type=match["type"],
        letters=letters,
        version=version,
        restrictions=restrictions,
    )


def letters_for(action: Action, *, instance: bool = True) -> str:
    """The v2 letter an action needs. History of one resource is a read; history of a type
    or of the whole system is a search (SMART App Launch 2, "Scopes for requesting FHIR
    resources")."""
    if action is Action.HISTORY:
        return "r" if instance else "s"
    return {
        Action.CREATE: "c",
        Action.READ: "r",
        Action.UPDATE: "u",
        Action.DELETE: "d",
        Action.SEARCH: "s",
    }[action]


@dataclass(frozen=True)
class ScopeSet:
    """The scopes of one token: resource scopes parsed, the others kept as text."""

    resource: tuple[ResourceScope, ...] = ()
    other: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, scopes: str | Iterable[str], *, strict: bool = True) -> ScopeSet:
        """Scopes from a space-separated string or a list. ``strict=False`` (a token
        issued by someone else) keeps a malformed resource scope as an inert string."""
        items = scopes.split() if isinstance(scopes, str) else list(scopes)
        resource: list[ResourceScope] = []
        other: set[str] = set()
        for item in items:
            try:
                parsed = parse_scope(item)
            except InvalidRequest:
                if strict:
                    raise
                other.add(item)
                continue
            if parsed is None:
                other.add(item)
            elif parsed not in resource:
                resource.append(parsed)
        return cls(tuple(resource), frozenset(other))

    @property
    def texts(self) -> frozenset[str]:
        return frozenset(scope.text for scope in self.resource) | self.other

    def granting(
        self, action: Action, resource_type: str, *, instance: bool = True
    ) -> tuple[ResourceScope, ...]:
        """The scopes that grant the action on the type, restricted ones included."""
        letter = letters_for(action, instance=instance)
        return tuple(scope for scope in self.resource if scope.grants(letter, resource_type))

    def contexts_allowing(
        self, action: Action, resource_type: str, *, instance: bool = True
    ) -> frozenset[str]:
        """The contexts (patient, user, system) in which an unrestricted scope grants the
        action: ``patient`` alone means "only within the patient in context"."""
        return frozenset(
            scope.context
            for scope in self.granting(action, resource_type, instance=instance)
            if not scope.restrictions
        )

    def allows(
        self,
        action: Action,
        resource_type: str,
        *,
        contexts: Iterable[str] = CONTEXTS,
        instance: bool = True,
    ) -> bool:
        """Whether an unrestricted scope of one of ``contexts`` grants the action on the
        type. Restricted v2 scopes (``?category=...``) are not counted: their conditions
        are for the search to add (``restrictions``)."""
        wanted = set(contexts)
        return bool(self.contexts_allowing(action, resource_type, instance=instance) & wanted)

    def restrictions(
        self, action: Action, resource_type: str, *, contexts: Iterable[str] = CONTEXTS
    ) -> tuple[tuple[tuple[str, str], ...], ...]:
        """For a type only restricted scopes open: each one's search parameters (any one
        of them is enough: OR between scopes, AND within one)."""
        wanted = set(contexts)
        return tuple(
            scope.restrictions
            for scope in self.granting(action, resource_type)
            if scope.restrictions and scope.context in wanted
        )

    def covers(self, requested: ScopeSet) -> bool:
        """Whether each requested resource scope is covered by one of these."""
        return all(
            any(granted.covers(wanted) for granted in self.resource)
            for wanted in requested.resource
        )

    def narrowed_to(self, requested: ScopeSet) -> ScopeSet:
        """The requested resource scopes these cover, and the other scopes asked for."""
        kept = tuple(
            wanted
            for wanted in requested.resource
            if any(granted.covers(wanted) for granted in self.resource)
        )
        return ScopeSet(kept, requested.other)

    def __str__(self) -> str:
        return " ".join(sorted(self.texts))
