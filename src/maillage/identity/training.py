"""Training the model with Splink (DuckDB backend), then exporting its m/u into the
in-process ``Model``.

Splink sees the very levels the scorer uses (``Comparison.splink_dict``): u is estimated
by random sampling of record pairs (almost all of them non-matches), m by expectation
maximisation on blocked pairs, one session per blocking rule (a comparison whose
columns a rule blocks on is not trained by that session, so the default rules cover each
other). The prior comes from deterministic rules and their assumed recall.

The input is prepared records (``normalize.prepare``); nothing here logs their values.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from maillage.identity.compare import CATALOG, DEFAULT_COMPARISONS
from maillage.identity.model import ComparisonParams, LevelParams, Model, Thresholds, default_model
from maillage.identity.normalize import LIST_COLUMNS

if TYPE_CHECKING:
    import duckdb

DEFAULT_EM_BLOCKING: tuple[tuple[str, ...], ...] = (
    ("birth_date",),
    ("birth_name", "first_name"),
)
DEFAULT_DETERMINISTIC: tuple[tuple[str, ...], ...] = (("birth_name", "first_name", "birth_date"),)


def _frame(records: Sequence[Mapping[str, Any]], columns: Sequence[str], offset: int) -> Any:
    import pandas as pd

    rows = []
    for position, record in enumerate(records):
        row: dict[str, Any] = {"unique_id": offset + position}
        for column in columns:
            value = record.get(column)
            if column in LIST_COLUMNS:
                row[column] = list(value) if value else None
            else:
                row[column] = value if value not in ("", None) else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["unique_id", *columns])


def _columns(names: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        for column in CATALOG[name].columns:
            seen[column] = None
    for column in ("birth_name", "first_name", "birth_date"):  # the default rules' columns
        seen.setdefault(column, None)
    return list(seen)


def train(
    tables: Sequence[Sequence[Mapping[str, Any]]],
    comparisons: Sequence[str] = DEFAULT_COMPARISONS,
    *,
    em_blocking: Sequence[Sequence[str]] = DEFAULT_EM_BLOCKING,
    deterministic_rules: Sequence[Sequence[str]] = DEFAULT_DETERMINISTIC,
    deterministic_recall: float = 0.7,
    u_max_pairs: float = 2e6,
    seed: int = 4242,
    thresholds: Thresholds | None = None,
) -> Model:
    """Train on one table (a dedupe of a territory's base) or two (a link between two
    sources); return the in-process model. A level Splink could not estimate keeps the
    untrained default, and says so in ``Model.trained``."""
    if not tables or len(tables) > 2:
        raise ValueError("train takes one table (dedupe) or two (link)")
    import duckdb

    # Splink's objects hold their DuckDB in reference cycles: closed and collected here,
    # its threads (a dozen) end with the training instead of at some later collection —
    # a process that forks after training (a test run) must not carry them into its
    # children. A collection costs milliseconds; a training, seconds.
    connection = duckdb.connect(":memory:")
    try:
        return _train(tables, comparisons, connection, em_blocking, deterministic_rules,
                      deterministic_recall, u_max_pairs, seed, thresholds)  # fmt: skip
    finally:
        connection.close()
        gc.collect()


def _train(
    tables: Sequence[Sequence[Mapping[str, Any]]],
    comparisons: Sequence[str],
    connection: duckdb.DuckDBPyConnection,
    em_blocking: Sequence[Sequence[str]],
    deterministic_rules: Sequence[Sequence[str]],
    deterministic_recall: float,
    u_max_pairs: float,
    seed: int,
    thresholds: Thresholds | None,
) -> Model:
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    columns = _columns(comparisons)
    db_api = DuckDBAPI(connection)
    offset = 0
    registered = []
    for number, records in enumerate(tables):
        registered.append(
            db_api.register(_frame(records, columns, offset), dataset_display_name=f"t{number}")
        )
        offset += len(records)
    settings = SettingsCreator(
        link_type="dedupe_only" if len(tables) == 1 else "link_only",
        comparisons=[CATALOG[name].splink_dict() for name in comparisons],
        blocking_rules_to_generate_predictions=[],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    # Splink reports parameters, not people; its notes (a level never observed) are kept
    # in Model.trained instead of the hub's log.
    linker = Linker(
        registered if len(registered) > 1 else registered[0],
        settings,
        log_level=logging.ERROR,
    )
    linker.training.estimate_probability_two_random_records_match(
        [block_on(*rule) for rule in deterministic_rules], recall=deterministic_recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
    for rule in em_blocking:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*rule), estimate_without_term_frequencies=True
        )
    exported = linker.misc.save_model_to_json()
    return from_splink(exported, comparisons, thresholds=thresholds)


def from_splink(
    settings: Mapping[str, Any],
    comparisons: Sequence[str],
    *,
    thresholds: Thresholds | None = None,
) -> Model:
    """The in-process model from a Splink model dictionary built on ``CATALOG``'s
    comparisons (null level first, then the same levels in the same order)."""
    fallback = default_model(comparisons)
    by_name = {c["output_column_name"]: c for c in settings["comparisons"]}
    params = []
    untrained: list[str] = []
    for name in comparisons:
        levels = [lv for lv in by_name[name]["comparison_levels"] if not lv.get("is_null_level")]
        expected = CATALOG[name].levels
        if len(levels) != len(expected):
            raise ValueError(
                f"Splink comparison {name!r} has {len(levels)} levels, not {len(expected)}"
            )
        default_levels = fallback.comparison(name).levels
        out = []
        for label, level, default in zip(expected, levels, default_levels, strict=True):
            m = level.get("m_probability")
            u = level.get("u_probability")
            if m is None or u is None:
                untrained.append(f"{name}.{label}")
            out.append(
                LevelParams(
                    label,
                    float(m) if m is not None else default.m,
                    float(u) if u is not None else default.u,
                )
            )
        params.append(ComparisonParams(name, tuple(out)))
    return Model(
        comparisons=tuple(params),
        prior=float(settings["probability_two_random_records_match"]),
        thresholds=thresholds or Thresholds(),
        trained={
            "by": "splink",
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "untrained_levels": untrained,
        },
    )
