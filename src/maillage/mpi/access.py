"""What the access decision point needs from the patient index: a person's identities.

A care relationship is with a person, not with one site's record of them: a grant on any
of the person's source identities, or on their territorial identity, opens all of them.
"""

from __future__ import annotations

from psycopg import sql


def same_person(patient: sql.Composable) -> sql.Composable:
    """A SELECT of the Patient ids that are the same person as ``patient`` (itself, the
    other sources of its territorial identity, or — for a territorial identity — its
    sources)."""
    return sql.SQL(
        "SELECT {p} UNION SELECT mpi_b.patient_id FROM mpi_source mpi_a"
        " JOIN mpi_source mpi_b ON mpi_b.territorial_id = mpi_a.territorial_id"
        " WHERE mpi_a.patient_id = {p} AND mpi_a.active AND mpi_b.active"
        " UNION SELECT mpi_a.territorial_id FROM mpi_source mpi_a WHERE mpi_a.patient_id = {p}"
        " UNION SELECT mpi_c.patient_id FROM mpi_source mpi_c WHERE mpi_c.territorial_id = {p}"
        " AND mpi_c.active"
    ).format(p=patient)
