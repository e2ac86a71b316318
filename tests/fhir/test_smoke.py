"""Create, read and search a patient through a real FHIR client."""

from fhirpy import SyncFHIRClient


def test_created_patient_reads_back_and_is_found_by_accentless_name(fhir: SyncFHIRClient) -> None:
    patient = fhir.resource(
        "Patient", name=[{"family": "Dupont", "given": ["Hélène"]}], birthDate="1980-02-03"
    )
    patient.save()
    assert patient.id
    read_back = fhir.reference("Patient", patient.id).to_resource()
    assert read_back["name"][0]["given"] == ["Hélène"]
    assert read_back["meta"]["versionId"] == "1"
    found = fhir.resources("Patient").search(name="helene").fetch_all()
    assert [p.id for p in found] == [patient.id]
