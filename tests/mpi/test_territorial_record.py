"""The person's record across sites: ``$everything`` on the territorial identity."""

from __future__ import annotations

import httpx

from tests import factories
from tests.factories import source_identity
from tests.mpi.support import create, territorial_of


def _refs(bundle: dict[str, object]) -> set[str]:
    entries = bundle.get("entry", [])
    assert isinstance(entries, list)
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}


def test_everything_on_the_territorial_identity_gathers_every_sites_records(
    http: httpx.Client,
) -> None:
    at_first = create(http, source_identity(site=0, birth_name="Rolland", given=("Elsa",)))
    at_second = create(http, source_identity(site=3, birth_name="ROLLAND", given=("Elsa",)))
    stranger = create(http, source_identity(site=3, birth_name="Vidal", birth_date="1944-04-04"))
    territorial = territorial_of(at_first)
    assert territorial_of(at_second) == territorial
    first_obs = create(http, factories.observation(subject=f"Patient/{at_first['id']}"))
    second_enc = create(http, factories.encounter(subject=f"Patient/{at_second['id']}"))
    other_obs = create(http, factories.observation(subject=f"Patient/{stranger['id']}"))

    record = http.get(f"/Patient/{territorial}/$everything").json()
    found = _refs(record)
    assert {
        f"Patient/{territorial}",
        f"Patient/{at_first['id']}",
        f"Patient/{at_second['id']}",
        f"Observation/{first_obs['id']}",
        f"Encounter/{second_enc['id']}",
    } <= found
    assert f"Observation/{other_obs['id']}" not in found
    assert record["total"] == len(found)

    # a site's own identity: its own records (and the territorial identity it points to)
    own = _refs(http.get(f"/Patient/{at_first['id']}/$everything").json())
    assert f"Observation/{first_obs['id']}" in own
    assert f"Encounter/{second_enc['id']}" not in own
