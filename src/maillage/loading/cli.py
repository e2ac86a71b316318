"""``maillage load``: run a bulk load, show its progress, print its summary.

Exit codes: 0 all loaded, 1 some lines rejected (or ``--strict`` stopped the load),
2 usage errors (raised as ``ConfigurationError`` and translated by the CLI surface).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from maillage.loading.report import LoadReport
from maillage.loading.service import BulkLoader

EXIT_OK = 0
EXIT_REJECTED = 1
# Rejections listed one by one before the rest is only counted.
_MAX_LISTED = 50


def run_load(
    conninfo: str,
    paths: list[Path],
    *,
    strict: bool,
    index: bool = True,
    index_build: str = "auto",
    audit: bool = True,
) -> int:
    """Load ``paths`` into the database at ``conninfo``; returns the process exit code."""
    errors = Console(stderr=True)
    loader = BulkLoader(conninfo, index=index, index_build=index_build, audit=audit)
    report = loader.load_paths(paths, strict=strict, progress=errors.is_terminal)
    print_summary(report, Console(), errors)
    return EXIT_REJECTED if report.rejected else EXIT_OK


def print_summary(report: LoadReport, out: Console, errors: Console) -> None:
    for rejected in report.rejected[:_MAX_LISTED]:
        errors.print(
            f"[red]rejected[/red] {escape(rejected.location)}: {escape(rejected.message)}",
            highlight=False,
            soft_wrap=True,
        )
    if len(report.rejected) > _MAX_LISTED:
        errors.print(f"... and {len(report.rejected) - _MAX_LISTED} more rejected lines")
    if report.indexes_built_after:
        out.print(
            f"search indexes built after the rows: {report.index_build_seconds:.1f} s "
            "(included in the time below)",
            highlight=False,
        )
    out.print(
        f"files: {report.files}  loaded: {report.loaded} "
        f"(created {report.created}, updated {report.updated})  "
        f"unchanged: {report.unchanged}  rejected: {len(report.rejected)}  "
        f"time: {report.seconds:.1f} s (writing {report.writing_seconds:.1f} s, waiting for "
        f"validation and indexing {report.preparing_seconds:.1f} s)  "
        f"rate: {report.rate:,.0f} resources/s",
        highlight=False,
        soft_wrap=True,
    )
    _print_references(report, out, errors)
    if not report.indexed and report.loaded:
        errors.print(
            "[yellow]loaded without search index[/yellow] (--no-index): searches do not find "
            "these resources until `maillage reindex` has run.",
            highlight=False,
        )
    if report.stopped:
        errors.print(
            "[red]stopped[/red]: --strict and a bad line was found; the chunk holding it "
            "was not stored (earlier chunks were). Exit code 1.",
            highlight=False,
        )
    elif report.rejected:
        errors.print(
            f"[yellow]{len(report.rejected)} line(s) were rejected[/yellow] and not loaded; "
            "the other resources were loaded. Exit code 1.",
            highlight=False,
        )


def _print_references(report: LoadReport, out: Console, errors: Console) -> None:
    """The conditional references resolved, and those left as written (counted by target
    type and reason, never listed: their criteria may hold a patient's identifier)."""
    found = report.references
    if found.before or found.rewritten:
        out.print(
            f"conditional references resolved: {found.before + found.rewritten:,} "
            f"({found.rewritten:,} after the load, in {found.resources:,} resources, "
            f"{report.references_seconds:.1f} s, included in the time below)",
            highlight=False,
            soft_wrap=True,
        )
    for (target_type, reason), count in sorted(found.unresolved.items()):
        errors.print(
            f"[yellow]{count} conditional reference(s) to {escape(target_type)} left as "
            f"written[/yellow]: {escape(reason)}",
            highlight=False,
            soft_wrap=True,
        )
