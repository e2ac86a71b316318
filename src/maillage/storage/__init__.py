"""Storage: PostgreSQL (embedded or external), pool, migrations."""

from maillage.storage.database import Database, DatabaseLocation, prepare_database
from maillage.storage.embedded import EmbeddedPostgres, EmbeddedPostgresForTests
from maillage.storage.migrate import available_migrations, current_version, upgrade

__all__ = [
    "Database",
    "DatabaseLocation",
    "EmbeddedPostgres",
    "EmbeddedPostgresForTests",
    "available_migrations",
    "current_version",
    "prepare_database",
    "upgrade",
]
