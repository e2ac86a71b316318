-- Background jobs: a small PostgreSQL-backed queue (docs/decisions/0003-job-queue.md).
-- Workers claim rows with SELECT ... FOR UPDATE SKIP LOCKED and refresh `heartbeat`
-- while they run; a running job whose heartbeat is too old (its worker died) is
-- claimed again, up to `max_attempts`.
CREATE TABLE job (
    id            text        PRIMARY KEY,
    kind          text        NOT NULL,
    params        jsonb       NOT NULL DEFAULT '{}',
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    progress      jsonb,
    result        jsonb,
    error         text,
    -- who asked (RequestContext.who) and the whole context, so the job runs as them
    requested_by  text        NOT NULL,
    context       jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 3,
    locked_by     text,
    heartbeat     timestamptz
);
CREATE INDEX job_claimable_idx ON job (kind, created_at) WHERE status IN ('queued', 'running');
