"""The batch dedupe (``maillage identity dedupe``): files the source identities the online
path never saw (bulk-loaded Patients, demo data) with exactly the online rules.

Each source identity goes through ``PatientIndex.file`` — the same scorer, the same
``identity.linking.place`` (alerts, never-links, verified links kept), the same review
queue, events and golden records — then gets its ``refer`` link written by an update of
its Patient (the index's own write: not matched again). Identities are filed in
transactions of ``batch_size``: a stopped run keeps what it committed, and the next run
takes up the identities not yet in ``mpi_source`` (resumable; a second run changes
nothing). ``refile=True`` (``--all``) re-places every source identity: auto links may
move, verified links and ``never`` decisions stay (``place`` keeps them).
"""

from __future__ import annotations

from collections.abc import Callable

from maillage.fhir.repository import FhirStore, Repository
from maillage.identity.golden import source_link
from maillage.mpi import batch_store
from maillage.mpi.index import PatientIndex, internal_writes, repo_connection
from maillage.security import RequestContext

DEDUPE_CONTEXT = RequestContext.system("identity-dedupe")


class BatchDedupe:
    def __init__(self, store: FhirStore, index: PatientIndex, *, batch_size: int = 500) -> None:
        self.store = store
        self.index = index
        self.batch_size = batch_size

    async def pending(self, *, refile: bool = False) -> int:
        async with self.store.db.transaction() as conn:
            return await batch_store.count_pending(conn, refile=refile)

    async def run(
        self, *, refile: bool = False, progress: Callable[[int], None] | None = None
    ) -> int:
        """File the pending source identities; the number filed."""
        after = ""
        filed = 0
        repo = self.store.repository(DEDUPE_CONTEXT)
        while True:
            async with repo.atomic() as bound:
                conn = repo_connection(bound)
                batch = await batch_store.next_batch(
                    conn, after=after, limit=self.batch_size, refile=refile
                )
                if not batch:
                    return filed
                for patient_id, body in batch:
                    await self._file_one(bound, patient_id, body)
            after = batch[-1][0]
            filed += len(batch)
            if progress is not None:
                progress(len(batch))

    async def _file_one(self, repo: Repository, patient_id: str, body: dict) -> None:
        conn = repo_connection(repo)
        territorial_id = await self.index.file(repo, conn, patient_id, body)
        if territorial_id is None:
            return
        linked = source_link(body, territorial_id)
        if linked != body:
            with internal_writes():
                await repo.update("Patient", patient_id, linked)
