"""Security: request context and the access decision point."""

from maillage.security.context import RequestContext
from maillage.security.policy import AccessPolicy, Action, AllowAll

__all__ = ["AccessPolicy", "Action", "AllowAll", "RequestContext"]
