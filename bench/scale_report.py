"""The Markdown report of the scale benchmark (bench/out/scale.md)."""

from __future__ import annotations

from typing import Any

MB = 1024 * 1024


def _verdict(ok: bool) -> str:
    return "**MET**" if ok else "**MISSED**"


def _load_section(payload: dict[str, Any]) -> list[str]:
    loads = payload["loads"]
    if "no_index" not in loads or "indexed" not in loads:
        return ["(loads not measured in this run: the database was reused)", ""]
    lines = [
        "| load | resources | seconds | resources/s | loader CPU s | PostgreSQL CPU s "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("no_index", "`maillage load --no-index`"), ("indexed", "`maillage load`")):
        run = loads[key]
        lines.append(
            f"| {label} | {run['loaded']:,} | {run['load_seconds']:.1f} | "
            f"{run['loaded'] / run['load_seconds']:,.0f} | {run['loader_cpu_seconds']:.0f} | "
            f"{run['postgres_cpu_seconds']:.0f} | {run['peak_rss_mb']:.0f} |"
        )
    ratio = payload["load_ratio"]
    lines += [
        "",
        f"Indexed rate / rate without indexing: **{ratio:.0%}** (target >= 50 %): "
        f"{_verdict(ratio >= 0.5)}",
        "",
    ]
    return lines


def _size_section(sizes: dict[str, Any]) -> list[str]:
    lines = [
        f"{sizes['resources']:,} resources; {sizes['index_rows_per_resource']:.1f} index rows "
        f"per resource; search index (index tables + their B-tree indexes) "
        f"**{sizes['search_index_bytes_per_resource']:,.0f} bytes per resource** "
        f"(the resource table itself, JSONB bodies + keys: "
        f"{sizes['resource_bytes_per_resource']:,.0f} bytes per resource).",
        "",
        "| table | rows | table MB | indexes MB |",
        "|---|---:|---:|---:|",
    ]
    for table, found in sizes["tables"].items():
        lines.append(
            f"| `{table}` | {found['rows']:,} | {found['table_bytes'] / MB:,.0f} | "
            f"{found['index_bytes'] / MB:,.0f} |"
        )
    return [*lines, ""]


def _latency_section(payload: dict[str, Any]) -> list[str]:
    lines = [
        f"One client, one keep-alive connection, {payload['requests']} requests per search "
        "(40 for `$everything`) "
        f"after 20 warm-up ones, values cycled from the data; hub with {payload['workers']} "
        "worker(s). Floor: the same resources (checked equal to the hub's on the first 10 "
        "queries) fetched by plain SQL through psycopg 3 (no count, no Bundle).",
        "",
        "| search | resources/answer | hub p50 ms | hub p95 ms | hub max ms | floor p50 ms "
        "| floor p95 ms | target p95 | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in payload["rows"]:
        hub, floor = row["hub"], row["floor"]
        lines.append(
            f"| {row['title']} | {row['mean_resources']:.0f} | {hub['p50_ms']:.1f} | "
            f"{hub['p95_ms']:.1f} | {hub['max_ms']:.1f} | {floor['p50_ms']:.1f} | "
            f"{floor['p95_ms']:.1f} | < {row['target_ms']} ms | "
            f"{_verdict(hub['p95_ms'] < row['target_ms'])} |"
        )
    return [*lines, ""]


def _plan_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["### Plans (EXPLAIN (ANALYZE, BUFFERS) of each statement the engine sends)", ""]
    for row in rows:
        lines += [f"#### {row['title']}", "", f"Example request: `{row['example']}`", ""]
        for plan in row.get("plans", []):
            scans = f" — seq scans: {plan['seq_scans']}" if plan["seq_scans"] else ""
            lines += ["```sql", plan["sql"] + scans, "```", "```", plan["plan"], "```", ""]
    return lines


def markdown(payload: dict[str, Any]) -> str:
    dataset = payload["dataset"]
    lines = [
        "## Search at scale",
        "",
        f"Data: {dataset['resources']:,} resources (the Synthea 10-patient export copied "
        f"{dataset['copies']} times with new ids and patient names, plus one patient owning "
        f"{dataset['heavy_resources']:,} resources). Command: `.venv/bin/python -m bench.scale`.",
        "",
        "### Bulk load with and without indexing",
        "",
        *_load_section(payload),
        "### Index size on disk",
        "",
        *_size_section(payload["sizes"]),
        "### Latency",
        "",
        *_latency_section(payload),
        *_plan_section(payload["rows"]),
    ]
    return "\n".join(lines)
