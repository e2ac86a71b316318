"""Helpers of the patient index's tests."""

from __future__ import annotations

from typing import Any

import httpx


def create(http: httpx.Client, patient: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"/{patient['resourceType']}", json=patient)
    assert response.status_code == 201, response.text
    return dict(response.json())


def territorial_of(patient: dict[str, Any]) -> str:
    refer = [link for link in patient.get("link", []) if link["type"] == "refer"]
    assert len(refer) == 1, patient.get("link")
    return str(refer[0]["other"]["reference"]).removeprefix("Patient/")


def identity_api(http: httpx.Client) -> httpx.Client:
    """A client of the review API (``/identity``) of the same hub."""
    base = str(http.base_url).rstrip("/").removesuffix("/fhir")
    return httpx.Client(base_url=f"{base}/identity", timeout=30)
