"""The domain error tree.

Every error a service raises is a ``MaillageError`` with a stable ``code``; each
surface (FHIR HTTP, MLLP, CLI) translates it in one place
(``maillage.fhir.http.outcomes`` for HTTP). Services never raise web-framework
exceptions.

    MaillageError
    ├── InvalidRequest            malformed input the client must fix (HTTP 400)
    │   ├── InvalidIns            an INS matricule (NIR/NIA) whose format or key is wrong
    │   ├── MalformedContent      body that is not JSON, or not a resource
    │   ├── IdMismatch            resourceType / id disagree with the URL
    │   ├── UnsupportedParameter  unknown search parameter under strict handling
    │   ├── InvalidScope          a token request asking for more SMART scopes than granted
    │   ├── InvalidGrant          an authorization code unknown, used, expired, or not
    │   │                         matching its client, redirect URI or PKCE verifier
    │   ├── AuthorizationRefused  an OAuth2 authorization request the hub refuses (sent
    │   │                         back to the app when its redirect URI is trusted)
    │   ├── UnknownValueSet       a value set url neither stored nor shipped (``:in``)
    │   └── ValueSetNotExpandable a value set the hub cannot expand (a filter on a code
    │                             system whose hierarchy it lacks, an import cycle)
    ├── ValidationFailed          a resource that breaks the FHIR model (422)
    │   └── IdentityRejected      a Patient that breaks the identity rules (INS, RNIV
    │                             status, birth date, site IPP systems) (422)
    ├── Unauthenticated           no valid sign-in: a missing, expired or forged access
    │                             token, a wrong password or TOTP code, a locked or
    │                             disabled account (401, ``WWW-Authenticate: Bearer``)
    ├── NotFound                  unknown type, id or version (404)
    ├── Gone                      a deleted resource (410)
    ├── MethodNotAllowed          interaction not supported here (405)
    ├── Conflict                  conflicting state, e.g. duplicate (409)
    │   └── IndexPending          a search parameter whose index is being rebuilt
    ├── PreconditionFailed        If-Match / conditional mismatch (412)
    ├── MultipleMatches           conditional op matched several resources (412)
    ├── Forbidden                 the access decision point said no (403)
    ├── NotAcceptable             asked for a format we do not serve (406)
    ├── PayloadTooLarge           body over the configured limit (413)
    ├── UnsupportedMediaType      body in a media type we do not read (415)
    ├── QueryTimeout              a query ran past its time limit (503)
    ├── TeleserviceUnavailable    a national teleservice (INSi) did not answer (503)
    └── ConfigurationError        the hub cannot start as configured (CLI)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One problem, located by a FHIRPath-like expression when it has a place."""

    message: str
    expression: str | None = None
    severity: str = "error"
    code: str = "invalid"


class MaillageError(Exception):
    code = "exception"

    def __init__(self, message: str, *, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or [Issue(message=message, code=self.code)]


class InvalidRequest(MaillageError):
    code = "invalid"


class MalformedContent(InvalidRequest):
    code = "structure"


class IdMismatch(InvalidRequest):
    code = "invalid"


class UnsupportedParameter(InvalidRequest):
    code = "not-supported"


class InvalidScope(InvalidRequest):
    """A token request (``POST /auth/token``) asks for scopes the account is not granted,
    or scopes that are not SMART scopes: the OAuth2 ``invalid_scope`` error."""

    code = "invalid"


class InvalidGrant(InvalidRequest):
    """An authorization code that cannot be exchanged: the OAuth2 ``invalid_grant``."""

    code = "invalid"


class AuthorizationRefused(InvalidRequest):
    """An authorization request (``/auth/authorize``) refused with the OAuth2 ``error``;
    ``redirect`` (the app's redirect URI with the error) when the app may be told, None
    when the client or its redirect URI is not trusted (the hub's page says why)."""

    code = "invalid"

    def __init__(
        self, message: str, error: str = "invalid_request", redirect: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.redirect = redirect


class InvalidIns(InvalidRequest):
    """An INS matricule (NIR or NIA) with a wrong length, layout or control key
    (``identity.ins``); the message says which part to correct."""

    code = "value"


class UnknownValueSet(InvalidRequest):
    """``:in``/``:not-in`` names a value set neither stored nor shipped: a value error,
    answered 400 under lenient handling too."""

    code = "not-found"


class ValueSetNotExpandable(InvalidRequest):
    """A value set whose members the hub cannot compute (``terminology``)."""

    code = "not-supported"


class ValidationFailed(MaillageError):
    code = "invalid"


class IdentityRejected(ValidationFailed):
    """A source identity (Patient) that breaks the identity rules
    (``identity.checks``): located issues, answered 422 like validation errors."""

    code = "business-rule"


class Unauthenticated(MaillageError):
    """The caller is not (validly) signed in (``maillage.security``).

    ``error`` is the RFC 6750 error code of the challenge: ``invalid_token`` for a token
    that is malformed, expired, forged or from an unknown issuer, ``invalid_request`` for a
    request that carries credentials the wrong way, ``None`` when none were sent (the
    challenge then names only the realm, RFC 6750 §3.1). Messages never echo a secret.
    """

    code = "login"

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.error = error

    def www_authenticate(self, realm: str = "maillage") -> str:
        """The ``WWW-Authenticate`` value a 401 answer carries (RFC 6750 §3)."""
        parts = [f'realm="{realm}"']
        if self.error:
            # RFC 6750 allows printable ASCII but for the quote and the backslash.
            description = "".join(
                char if " " <= char <= "~" and char not in '"\\' else "'"
                for char in self.message.replace('"', "'")
            )
            parts += [f'error="{self.error}"', f'error_description="{description}"']
        return "Bearer " + ", ".join(parts)


class NotFound(MaillageError):
    code = "not-found"


class Gone(MaillageError):
    code = "deleted"


class MethodNotAllowed(MaillageError):
    code = "not-supported"


class Conflict(MaillageError):
    code = "conflict"


class IndexPending(Conflict):
    """A search names a parameter whose index rows a reindex job is still writing."""

    code = "incomplete"


class PreconditionFailed(MaillageError):
    code = "conflict"


class MultipleMatches(PreconditionFailed):
    code = "multiple-matches"


class Forbidden(MaillageError):
    code = "forbidden"


class NotAcceptable(MaillageError):
    code = "not-supported"


class PayloadTooLarge(MaillageError):
    code = "too-costly"


class UnsupportedMediaType(MaillageError):
    code = "not-supported"


class QueryTimeout(MaillageError):
    code = "timeout"


class TeleserviceUnavailable(MaillageError):
    """A national teleservice (``maillage.national``, e.g. INSi) is out of reach or
    answered that it is unavailable: the caller may retry later; nothing was decided."""

    code = "transient"


class ConfigurationError(MaillageError):
    code = "exception"


@dataclass
class ErrorReport:
    """Collects several issues before raising them together (Splink's ErrorLogger habit)."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, message: str, expression: str | None = None) -> None:
        self.issues.append(Issue(message=message, expression=expression))

    def raise_if_any(self, error: type[MaillageError] = ValidationFailed) -> None:
        if self.issues:
            summary = "; ".join(issue.message for issue in self.issues[:3])
            raise error(summary, issues=list(self.issues))
