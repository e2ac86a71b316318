"""Normalisation done in Python so that plain PostgreSQL needs no extension."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from maillage.fhir.indexing.normalize import date_range, normalize_string, token_hash


def test_strings_lose_case_accents_and_punctuation() -> None:
    assert normalize_string("Hélène") == "helene"
    assert normalize_string("  LE GOFF-Ménard ") == "le goff menard"
    assert normalize_string("Œuvre") == "oeuvre"


def test_a_year_covers_the_whole_year() -> None:
    low, high = date_range("2024")  # type: ignore[misc]
    assert low == datetime(2024, 1, 1, tzinfo=UTC)
    assert high == datetime(2025, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)


def test_a_month_covers_its_days_including_leap_february() -> None:
    low, high = date_range("2024-02")  # type: ignore[misc]
    assert low == datetime(2024, 2, 1, tzinfo=UTC)
    assert high.day == 29


def test_a_datetime_keeps_its_zone_and_second_precision() -> None:
    low, high = date_range("2024-03-05T10:20:30+02:00")  # type: ignore[misc]
    zone = timezone(timedelta(hours=2))
    assert low == datetime(2024, 3, 5, 10, 20, 30, tzinfo=zone)
    assert high - low == timedelta(seconds=1) - timedelta(microseconds=1)


def test_invalid_dates_are_not_indexed() -> None:
    assert date_range("2024-13-01") is None
    assert date_range("yesterday") is None


def test_token_hash_depends_on_every_part() -> None:
    assert token_hash("Patient", "identifier", "a", "1") != token_hash(
        "Patient", "identifier", "a", "2"
    )
    assert token_hash("Patient", "gender", "female") == token_hash("Patient", "gender", "female")
    assert token_hash("Patient", "gender", "female") != token_hash("Person", "gender", "female")


def test_the_last_representable_dates_are_indexed_not_overflowed() -> None:
    for value in ("9999", "9999-12", "9999-12-31", "9999-12-31T23:59:59Z"):
        bounds = date_range(value)
        assert bounds is not None, value
        assert bounds[0].year == 9999
        assert bounds[1] >= bounds[0]
