"""One settings object; nothing else in the code reads ``os.environ``.

Every field can be set with an environment variable prefixed ``MAILLAGE_``
(``MAILLAGE_DATABASE_URL``, ``MAILLAGE_DATA_DIR``...).
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", extra="ignore")

    # With no URL the hub starts an embedded PostgreSQL in ``data_dir / "pg"``.
    database_url: str | None = None
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8080
    # Public base URL used in Location headers and Bundle links; derived from the
    # request when unset.
    base_url: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    default_page_size: int = 50
    max_page_size: int = 1000
    db_pool_min: int = 2
    db_pool_max: int = 10
    # Statement timeout for searches, so that a runaway query answers 503, not a hang.
    search_timeout_ms: int = 10_000
    log_level: str = "INFO"
    # Bulk Data export files; ``data_dir / "exports"`` when unset.
    export_dir: Path | None = None
    # Background jobs: how often an idle worker looks for work, how often a running job's
    # heartbeat is refreshed, and after how long without one its worker is taken for dead.
    job_poll_interval_s: float = 1.0
    job_heartbeat_s: float = 5.0
    job_stale_after_s: float = 30.0
    job_max_attempts: int = 3
    # False: this process runs no background job (another process of the hub does).
    jobs_enabled: bool = True
    # How often each process checks whether custom SearchParameter definitions changed
    # (docs/decisions/0004-custom-search-parameters.md), and the size of a reindex batch.
    search_definitions_refresh_s: float = 1.0
    reindex_batch_rows: int = 500
    # HL7 v2 gateway (docs/architecture.md, src/maillage/hl7v2/): the MLLP listener that
    # `maillage serve` starts (in one process only) and `maillage gateway` runs alone.
    hl7_enabled: bool = True
    # False: this process only processes stored messages (no listener).
    hl7_listen: bool = True
    hl7_host: str = "127.0.0.1"
    hl7_port: int = 2575
    # TLS when both are set; with a client CA, senders must present a certificate.
    hl7_tls_cert: Path | None = None
    hl7_tls_key: Path | None = None
    hl7_tls_client_ca: Path | None = None
    # Senders (JSON list of hl7v2.sites.SiteConfig); the demo territory's sites if unset.
    hl7_sites_file: Path | None = None
    hl7_max_message_bytes: int = 16 * 1024 * 1024
    # A frame started but not ended after this long is answered AR and kept.
    hl7_partial_timeout_s: float = 30.0
    # How long a receipt may wait for a database connection before answering AR.
    hl7_store_timeout_s: float = 5.0
    # Processing: concurrent workers, attempts before the dead letter, backoff.
    hl7_workers: int = 2
    # `maillage gateway`: processes converting messages (the first one also listens).
    hl7_processes: int = 2
    hl7_max_attempts: int = 5
    hl7_retry_base_s: float = 2.0
    hl7_retry_max_s: float = 300.0
    hl7_poll_interval_s: float = 0.2
    # Territorial patient index (src/maillage/mpi/): every Patient write is matched and
    # linked online; the matching model trained by `maillage identity train` (the
    # untrained defaults until then) and the two thresholds, as match probabilities.
    identity_index_enabled: bool = True
    identity_model_file: Path | None = None
    identity_auto_link: float | None = None
    identity_review: float | None = None
    # INSi: no client of the national teleservice here (it needs the GHT's certificates
    # and the LPS registration); the simulator answers from this register (NDJSON of
    # national.insi.InsiIdentity), or from the demo territory's register when unset.
    insi_register_file: Path | None = None
    # Sign-in (src/maillage/security/, issue 6): OAuth2 bearer tokens on every route but
    # /health, the /auth endpoints and, unless ``auth_protect_metrics``, /metrics.
    auth_enabled: bool = True
    # External issuers trusted besides the built-in one (the GHT's IdP, Pro Santé
    # Connect): a JSON list of security.tokens.IssuerConfig.
    auth_issuers_file: Path | None = None
    # The built-in issuer's identifier (``iss``) and the audience tokens must name;
    # ``{public base}/auth`` and ``{public base}/fhir`` when unset.
    auth_issuer_url: str | None = None
    auth_audience: str | None = None
    # Tokens the built-in issuer signs live this long (seconds), signed with this
    # algorithm by a key generated once into ``data_dir/keys``.
    auth_token_lifetime_s: int = 600
    auth_signing_algorithm: str = "ES256"
    # Clock skew tolerated on exp/nbf/iat, and how long fetched issuer keys are kept.
    auth_leeway_s: float = 30.0
    auth_jwks_cache_s: float = 3600.0
    # Lockout: this many failed sign-ins in a row lock the account for this long.
    auth_lockout_threshold: int = 5
    auth_lockout_duration_s: float = 900.0
    # Failed sign-ins from one address before /auth/token refuses it for a while (429).
    auth_address_failure_limit: int = 20
    auth_address_failure_window_s: float = 300.0
    auth_protect_metrics: bool = False
    # Access rules (src/maillage/security/): "care" (the role matrix and care
    # relationships), "allow-all", or "auto": care when sign-in is on, else allow-all.
    # An encounter keeps its care relationship this many days after it ended; a
    # break-the-glass access lasts this long.
    access_policy: str = "auto"
    # Every FHIR exchange recorded in the hash-chained audit (src/maillage/audit/).
    audit_enabled: bool = True
    # The audit chain's head, published outside the database (audit/anchoring.py): logged
    # and appended to this file every interval (0: never) when it moved.
    audit_anchor_file: Path | None = None
    audit_anchor_interval_s: float = 3600.0
    care_recent_days: int = 30
    break_glass_hours: float = 4.0

    @property
    def exports_path(self) -> Path:
        return self.export_dir if self.export_dir is not None else self.data_dir / "exports"

    @property
    def public_root_url(self) -> str:
        """The hub's public root: ``base_url`` (the FHIR base) without its ``/fhir``."""
        if self.base_url:
            return self.base_url.rstrip("/").removesuffix("/fhir")
        return f"http://{self.host}:{self.port}"

    @property
    def auth_issuer(self) -> str:
        return self.auth_issuer_url or f"{self.public_root_url}/auth"

    @property
    def auth_audience_url(self) -> str:
        return self.auth_audience or f"{self.public_root_url}/fhir"

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys"

    @property
    def identity_model_path(self) -> Path:
        if self.identity_model_file is not None:
            return self.identity_model_file
        return self.data_dir / "identity" / "model.json"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)  # type: ignore[arg-type]
