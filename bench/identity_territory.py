"""Identity matching on a synthetic French territorial set: batch dedupe of the five
demo sites' registrations with the in-process engine.

    .venv/bin/python -m bench.identity_territory [--persons 20000] [--seed 2026] [--train]

The set (``bench.identity_territory_data``): N persons registered at 1–3 sites each, as
FHIR Patients (FR Core shape) typed the ways desks type them, ~40 % qualified with an
INS, twins and homonyms included. Per run:

1. read each Patient into traits (``identity.patient_traits``) and prepare them;
2. block (``blocking.candidate_pairs``, the default rules) and score every candidate pair
   (``scoring.Scorer``: the default hand-set model, and with ``--train`` also a model
   trained by ``training.train`` on the set itself, without its truth);
3. auto links (decision ``link``) clustered by union-find; the review queue is every
   pair decided ``review`` or flagged (twin/homonym, INS collision, birthplace conflict);
4. pairwise precision / recall / F1 of the clusters against the truth
   (``identity.evaluation``), the recall counting the review queue, and the twin and
   homonym pairs wrongly merged (both persons in one cluster).

Floor, same run: reading, preparing and blocking alone (the work every matcher does
before scoring a pair). Targets (issue 4): auto-link precision ≥ 0.999, recall ≥ 0.98
counting the review queue, no twin or homonym merged. Results:
bench/out/identity_territory.md.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from typing import Any

from bench.http_common import machine_description, verdict, write_results
from bench.identity_territory_data import DEFAULT_PERSONS, DEFAULT_SEED, TerritorySet, generate
from maillage.identity.blocking import candidate_pairs
from maillage.identity.evaluation import clusters, pairwise_scores
from maillage.identity.model import Model, default_model
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.identity.scoring import LINK, REVIEW, Scorer
from maillage.identity.training import train

PRECISION_TARGET = 0.999
RECALL_WITH_REVIEW_TARGET = 0.98


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--train", action="store_true", help="also train a model on the set (Splink)"
    )
    parser.add_argument("--u-pairs", type=float, default=2e6, help="Splink u sampling pairs")
    parser.add_argument("--errors", type=int, default=0, help="print N wrong links and misses")
    return parser.parse_args(argv)


def prepared_records(patients: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [prepare(patient_traits(patient)) for patient in patients]


def merged(
    related: Sequence[tuple[str, str]], cluster_of: dict[str, str], data: TerritorySet
) -> int:
    """How many of these person pairs ended up with records in one cluster."""
    records = data.records_of()
    count = 0
    for a, b in related:
        clusters_a = {cluster_of[record] for record in records.get(a, ())}
        if any(cluster_of[record] in clusters_a for record in records.get(b, ())):
            count += 1
    return count


def match(data: TerritorySet, model: Model, label: str, errors: int = 0) -> dict[str, Any]:
    gc.collect()
    started = time.perf_counter()
    records = prepared_records(data.patients)
    prepared_s = time.perf_counter() - started
    pairs = sorted(candidate_pairs(records))
    floor_s = time.perf_counter() - started
    scorer = Scorer(model)
    ids = data.record_ids
    links: list[tuple[str, str]] = []
    review: list[tuple[str, str]] = []
    rules: dict[str, int] = {}
    scored_started = time.perf_counter()
    for i, j in pairs:
        score = scorer.score(records[i], records[j])
        if score.decision == LINK:
            links.append((ids[i], ids[j]))
        elif score.decision == REVIEW or score.flags:
            review.append((ids[i], ids[j]))
        if score.rule:
            rules[score.rule] = rules.get(score.rule, 0) + 1
    cluster_of = clusters(ids, links)
    total_s = time.perf_counter() - started
    score_s = time.perf_counter() - scored_started
    scores = pairwise_scores(cluster_of, data.truth, review)
    truth = data.truth
    blocked_true = sum(1 for i, j in pairs if truth[ids[i]] == truth[ids[j]])
    twins_merged = merged(data.twins, cluster_of, data)
    homonyms_merged = merged(data.homonyms, cluster_of, data)
    if errors:
        show_errors(data, records, model, links, cluster_of, errors)
    ok = (
        scores.precision >= PRECISION_TARGET
        and scores.recall_with_review >= RECALL_WITH_REVIEW_TARGET
        and twins_merged == 0
        and homonyms_merged == 0
    )
    return {
        "model": label,
        **scores.as_dict(),
        "candidate_pairs": len(pairs),
        "blocking_recall": blocked_true / scores.true_pairs if scores.true_pairs else 1.0,
        "links": len(links),
        "review_pairs": len(review),
        "rules": rules,
        "twin_pairs": len(data.twins),
        "twins_merged": twins_merged,
        "homonym_pairs": len(data.homonyms),
        "homonyms_merged": homonyms_merged,
        "prepare_s": prepared_s,
        "floor_s": floor_s,
        "score_s": score_s,
        "total_s": total_s,
        "records_per_s": len(records) / total_s,
        "floor_records_per_s": len(records) / floor_s,
        "pairs_per_s": len(pairs) / score_s if score_s else 0.0,
        "prior": model.prior,
        "auto_link": model.thresholds.auto_link,
        "review": model.thresholds.review,
        "verdict": verdict(ok),
    }


def show_errors(
    data: TerritorySet,
    records: list[dict[str, Any]],
    model: Model,
    links: list[tuple[str, str]],
    cluster_of: dict[str, str],
    count: int,
) -> None:
    """A few wrong links and missed pairs, with their explanation (synthetic data)."""
    scorer = Scorer(model)
    position = {record: n for n, record in enumerate(data.record_ids)}
    truth = data.truth

    def show(kind: str, a: str, b: str) -> None:
        left, right = records[position[a]], records[position[b]]
        score = scorer.score(left, right)
        print(f"-- {kind} {a} {b} w={score.match_weight:.1f} {score.decision} {score.flags}")
        for column in ("birth_name", "used_name", "first_names", "birth_date", "birthplace"):
            print(f"   {column}: {left[column]!r} | {right[column]!r}")
        print("   " + ", ".join(f"{f.field}={f.level}:{f.weight:.1f}" for f in score.explanation))

    wrong = [(a, b) for a, b in links if truth[a] != truth[b]]
    for a, b in wrong[:count]:
        show("wrong link", a, b)
    by_person = data.records_of()
    missed = 0
    for members in by_person.values():
        for n, a in enumerate(members):
            for b in members[n + 1 :]:
                if cluster_of[a] != cluster_of[b] and missed < count:
                    show("not linked", a, b)
                    missed += 1


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | records | true pairs | candidate pairs | blocking recall | precision "
        "| recall | F1 | recall incl. review | review pairs | twins merged | homonyms merged "
        "| verdict | records/s | floor records/s | scored pairs/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['records']:,} | {row['true_pairs']:,} "
            f"| {row['candidate_pairs']:,} | {row['blocking_recall']:.4f} "
            f"| **{row['precision']:.4f}** | {row['recall']:.4f} | {row['f1']:.4f} "
            f"| **{row['recall_with_review']:.4f}** | {row['review_pairs']:,} "
            f"| {row['twins_merged']} / {row['twin_pairs']} "
            f"| {row['homonyms_merged']} / {row['homonym_pairs']} | {row['verdict']} "
            f"| {row['records_per_s']:,.0f} | {row['floor_records_per_s']:,.0f} "
            f"| {row['pairs_per_s']:,.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    data = generate(args.persons, args.seed)
    generate_s = time.perf_counter() - started
    print(
        f"== identity_territory: {args.persons:,} persons, {len(data.patients):,} "
        f"registrations, {len(data.twins)} twin and {len(data.homonyms)} homonym pairs "
        f"(generated in {generate_s:.1f} s)"
    )
    rows = [match(data, default_model(), "default (untrained)", args.errors)]
    train_s = None
    if args.train:
        records = prepared_records(data.patients)
        started = time.perf_counter()
        trained = train([records], u_max_pairs=args.u_pairs)
        train_s = time.perf_counter() - started
        rows.append(match(data, trained, f"trained on the set ({train_s:.0f} s)", args.errors))
    lines = table(rows)
    for line in lines:
        print(line)
    machine = machine_description()
    markdown = "\n".join(
        [
            "# Identity matching on a French territorial set",
            "",
            f"{args.persons:,} synthetic persons (seed {args.seed}), "
            f"{len(data.patients):,} registrations at the five demo sites; auto links "
            "clustered by union-find; review = pairs decided review or flagged. Floor: "
            "reading, preparing and blocking alone. Targets: precision ≥ "
            f"{PRECISION_TARGET}, recall incl. review ≥ {RECALL_WITH_REVIEW_TARGET}, "
            "no twin or homonym merged.",
            "",
            *lines,
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
            "",
        ]
    )
    write_results(
        "identity_territory",
        {
            "machine": machine,
            "persons": args.persons,
            "seed": args.seed,
            "registrations": len(data.patients),
            "variations": data.variations,
            "train_s": train_s,
            "runs": rows,
        },
        markdown,
    )
    return 0 if all(row["verdict"] == "MET" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
