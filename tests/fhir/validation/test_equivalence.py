"""The compiled validator against fhir.resources, on the Synthea samples and mutations.

Every resource of the shared Synthea samples must be accepted by both. For broken copies
of a spread of them (see ``mutations``), every one of a class both should refuse is
refused by both, and the compiled validator names the broken element's expression; the
classes only the specification refuses (fhir.resources accepts them: empty arrays,
nulls, codes outside a required binding, a uri with a space...) must be refused by the
compiled validator.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

from maillage.errors import ValidationFailed
from maillage.fhir.validation import validate_resource
from maillage.fhir.validation_schema import reference
from tests.fhir.validation.mutations import SAMPLES, SYNTHEA, Mutation, mutations, synthea_resources

pytestmark = pytest.mark.skipif(
    not SYNTHEA.is_dir(), reason=f"the shared Synthea samples are not at {SYNTHEA}"
)

# Resources of each type taken from each sample for mutation (spread over the file).
PER_TYPE = 4


def _ours(resource: dict[str, Any]) -> list[str]:
    """The expressions the compiled validator reports; empty when it accepts."""
    try:
        validate_resource(resource)
    except ValidationFailed as error:
        return [issue.expression or "" for issue in error.issues]
    return []


@pytest.fixture(scope="module", params=SAMPLES)
def sample(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    resources = synthea_resources(request.param)
    assert resources, f"no resources in {request.param}"
    return resources


def _spread(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_type: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for resource in resources:
        by_type[resource["resourceType"]].append(resource)
    chosen: list[dict[str, Any]] = []
    for of_type in by_type.values():
        step = max(1, len(of_type) // PER_TYPE)
        chosen.extend(of_type[::step][:PER_TYPE])
    return chosen


def test_both_accept_every_synthea_resource(sample: list[dict[str, Any]]) -> None:
    refused_by_us = {}
    refused_by_models = {}
    for resource in sample:
        key = f"{resource['resourceType']}/{resource.get('id')}"
        if problems := _ours(resource):
            refused_by_us[key] = problems
        if problems_ := reference.problems(resource):
            refused_by_models[key] = problems_
    assert not refused_by_us, list(refused_by_us.items())[:5]
    assert not refused_by_models, list(refused_by_models.items())[:5]


def test_mutations_are_refused_by_both_and_located(sample: list[dict[str, Any]]) -> None:
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    for resource in _spread(sample):
        for mutation in mutations(resource):
            counts[mutation.kind] += 1
            counts["@backbone"] += mutation.in_backbone and not mutation.valid
            failures.extend(_judge(mutation))
    assert not failures, f"{len(failures)} failures, first: {failures[:10]}"
    # every class of the brief was exercised
    for kind in (
        "drop-required",
        "unknown-element",
        "wrap-single",
        "unwrap-list",
        "string-to-number",
        "string-to-bool",
        "number-to-string",
        "bad-dateTime",
        "bad-id",
        "bad-code",
        "bad-uri",
        "two-choices",
        "bad-required-code",
        "contained-unknown-type",
        "add-primitive-extension",
        "drop-optional",
        "@backbone",
    ):
        assert counts[kind] > 0, (kind, counts)
    assert sum(counts.values()) > 1000, counts


def _judge(mutation: Mutation) -> list[str]:
    where = mutation.expression
    ours = _ours(mutation.resource)
    if mutation.valid:
        models = reference.problems(mutation.resource)
        if ours or models:
            return [f"{mutation.kind} at {where}: refused by us {ours[:3]} / models {models[:3]}"]
        return []
    failures = []
    if not ours:
        failures.append(f"{mutation.kind} at {where}: accepted by the compiled validator")
    elif where not in ours:
        failures.append(f"{mutation.kind} at {where}: reported at {ours[:3]} instead")
    if mutation.agree and not reference.problems(mutation.resource):
        failures.append(f"{mutation.kind} at {where}: accepted by fhir.resources")
    return failures


def test_a_nested_backbone_error_is_located() -> None:
    encounter = next(
        resource
        for resource in synthea_resources("10-patients")
        if resource["resourceType"] == "Encounter" and resource.get("participant")
    )
    nested = [
        mutation
        for mutation in mutations(encounter)
        if mutation.in_backbone and mutation.agree and mutation.kind == "wrap-single"
    ]
    assert any(".participant[0]." in mutation.expression for mutation in nested)
    for mutation in nested:
        assert mutation.expression in _ours(mutation.resource)
        assert reference.problems(mutation.resource)
