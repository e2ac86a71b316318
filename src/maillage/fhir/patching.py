"""JSON Patch (RFC 6902) applied to a stored body, with the errors FHIR expects
(http.html#patch): a malformed patch document is a 400, a patch that cannot apply or
that would change the resource's type or id is a 422."""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from maillage.errors import InvalidRequest, ValidationFailed


def check_patch_document(operations: Any) -> None:
    if not isinstance(operations, list):
        raise InvalidRequest("a JSON Patch body is an array of operations")


def apply_json_patch(
    body: bytes | str, operations: list[Any], resource_type: str, resource_id: str
) -> dict[str, Any]:
    """The resource ``body`` with ``operations`` applied."""
    try:
        patched = jsonpatch.apply_patch(orjson.loads(body), operations)
    except jsonpatch.InvalidJsonPatch as error:
        raise InvalidRequest(f"the JSON Patch document is invalid: {error}") from error
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise ValidationFailed(f"the patch cannot be applied: {error}") from error
    if not isinstance(patched, dict):
        raise ValidationFailed("a patch must leave a resource (a JSON object)")
    if patched.get("id") != resource_id or patched.get("resourceType") != resource_type:
        raise ValidationFailed("a patch may not change resourceType or id")
    return patched
