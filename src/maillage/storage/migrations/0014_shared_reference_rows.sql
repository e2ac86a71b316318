-- Reference parameters read from another one's rows.
--
-- An official reference parameter such as Observation's ``patient``
-- (``Observation.subject.where(resolve() is Patient)``) indexed the same references as
-- ``subject`` (``Observation.subject``), restricted to one target type: a fifth of the
-- reference rows of a clinical load were such copies. The hub now reads them from the
-- other parameter's rows of that target type (maillage.fhir.definitions.reference_rows)
-- and writes none. The pairs below are those the official R4 definitions give
-- (``SearchParam.rows_of``; tests/storage/test_migrations.py checks they still agree);
-- custom SearchParameters cannot take these codes.
--
-- A reference's identifier row (kept for ``:identifier``) now carries the type its
-- reference names, which ``patient:identifier=`` reads; rows written before have none:
-- those the copied parameter also held get the type from it before the copies go.
CREATE TEMPORARY TABLE shared_reference_rows (resource_type text, param text,
    rows_param text, target_type text) ON COMMIT DROP;
INSERT INTO shared_reference_rows VALUES
    ('Account', 'patient', 'subject', 'Patient'),
    ('Appointment', 'location', 'actor', 'Location'),
    ('Appointment', 'patient', 'actor', 'Patient'),
    ('Appointment', 'practitioner', 'actor', 'Practitioner'),
    ('AppointmentResponse', 'location', 'actor', 'Location'),
    ('AppointmentResponse', 'patient', 'actor', 'Patient'),
    ('AppointmentResponse', 'practitioner', 'actor', 'Practitioner'),
    ('Basic', 'patient', 'subject', 'Patient'),
    ('CarePlan', 'patient', 'subject', 'Patient'),
    ('CareTeam', 'patient', 'subject', 'Patient'),
    ('ChargeItem', 'patient', 'subject', 'Patient'),
    ('ClinicalImpression', 'patient', 'subject', 'Patient'),
    ('Communication', 'patient', 'subject', 'Patient'),
    ('CommunicationRequest', 'patient', 'subject', 'Patient'),
    ('Composition', 'patient', 'subject', 'Patient'),
    ('Condition', 'patient', 'subject', 'Patient'),
    ('Contract', 'patient', 'subject', 'Patient'),
    ('DeviceRequest', 'patient', 'subject', 'Patient'),
    ('DiagnosticReport', 'patient', 'subject', 'Patient'),
    ('DocumentManifest', 'patient', 'subject', 'Patient'),
    ('DocumentReference', 'patient', 'subject', 'Patient'),
    ('Encounter', 'patient', 'subject', 'Patient'),
    ('Encounter', 'practitioner', 'participant', 'Practitioner'),
    ('Flag', 'patient', 'subject', 'Patient'),
    ('Goal', 'patient', 'subject', 'Patient'),
    ('GuidanceResponse', 'patient', 'subject', 'Patient'),
    ('ImagingStudy', 'patient', 'subject', 'Patient'),
    ('Invoice', 'patient', 'subject', 'Patient'),
    ('List', 'patient', 'subject', 'Patient'),
    ('MeasureReport', 'patient', 'subject', 'Patient'),
    ('Media', 'patient', 'subject', 'Patient'),
    ('MedicationAdministration', 'patient', 'subject', 'Patient'),
    ('MedicationDispense', 'patient', 'subject', 'Patient'),
    ('MedicationRequest', 'patient', 'subject', 'Patient'),
    ('MedicationStatement', 'patient', 'subject', 'Patient'),
    ('Observation', 'patient', 'subject', 'Patient'),
    ('Person', 'patient', 'link', 'Patient'),
    ('Person', 'practitioner', 'link', 'Practitioner'),
    ('Person', 'relatedperson', 'link', 'RelatedPerson'),
    ('Procedure', 'patient', 'subject', 'Patient'),
    ('Provenance', 'patient', 'target', 'Patient'),
    ('QuestionnaireResponse', 'patient', 'subject', 'Patient'),
    ('RequestGroup', 'patient', 'subject', 'Patient'),
    ('RiskAssessment', 'patient', 'subject', 'Patient'),
    ('ServiceRequest', 'patient', 'subject', 'Patient'),
    ('Specimen', 'patient', 'subject', 'Patient'),
    ('Task', 'patient', 'subject', 'Patient')
;
UPDATE sp_reference q SET target_type = s.target_type
    FROM shared_reference_rows s, sp_reference p
    WHERE q.resource_type = s.resource_type AND q.param = s.rows_param
    AND q.target_id IS NULL AND q.target_type IS NULL
    AND p.rid = q.rid AND p.resource_type = s.resource_type AND p.param = s.param
    AND p.target_id IS NULL AND p.target_url = q.target_url;
DELETE FROM sp_reference x USING shared_reference_rows s
    WHERE x.resource_type = s.resource_type AND x.param = s.param;
