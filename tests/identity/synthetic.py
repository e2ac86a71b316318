"""Synthetic French identities for the identity tests: invented combinations of common
names, dates and places; no real person."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from maillage.identity.ins import with_key

SURNAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "de la Fontaine",
    "D'Arcy",
    "Saint-Martin",
    "Le Goff",
    "Quéré",
]
FIRST_F = [
    "Marie",
    "Anne",
    "Claire",
    "Camille",
    "Léa",
    "Chloé",
    "Inès",
    "Élodie",
    "Sophie",
    "Isabelle",
    "Nathalie",
    "Hélène",
    "Marie-Claire",
    "Anne-Sophie",
    "Zoé",
    "Manon",
]
FIRST_M = [
    "Jean",
    "Pierre",
    "Louis",
    "Lucas",
    "Hugo",
    "Théo",
    "Nicolas",
    "Julien",
    "Éric",
    "François",
    "Jean-Pierre",
    "Jean-Paul",
    "Marc",
    "Paul",
    "Yves",
    "Noël",
]
STREETS = [
    "rue de la République",
    "avenue Jean Jaurès",
    "place du Marché",
    "chemin des Vignes",
    "boulevard Victor Hugo",
    "impasse des Lilas",
    "rue Saint-Michel",
    "allée des Chênes",
]
CITIES = ["Lyon", "Ajaccio", "Bastia", "Saint-Étienne", "Nantes", "Brest", "Quimper", "Lille"]
PLACES = [
    "75056",
    "69123",
    "13055",
    "2A004",
    "2B033",
    "33063",
    "31555",
    "59350",
    "67482",
    "35238",
    "44109",
    "06088",
    "99134",
    "29019",
    "76540",
]


def person(rng: random.Random, number: int) -> dict[str, Any]:
    sex = rng.choice("MF")
    pool = FIRST_M if sex == "M" else FIRST_F
    firsts = rng.sample(pool, rng.choice((1, 2, 2, 3)))
    return {
        "id": number,
        "birth_name": rng.choice(SURNAMES),
        "used_name": None,
        "first_names": " ".join(n for n in firsts),
        "first_name": firsts[0],
        "sex": sex,
        "birth_date": dt.date(
            rng.randint(1930, 2020), rng.randint(1, 12), rng.randint(1, 28)
        ).isoformat(),
        "birthplace": rng.choice(PLACES),
        "postcode": f"{rng.randint(1, 95):02d}{rng.randint(0, 999):03d}",
        "house_number": str(rng.randint(1, 120)),
        "address_line": rng.choice(STREETS),
        "address_extra": rng.choice(["", "", "Bâtiment B", "Résidence les Pins"]),
        "city": rng.choice(CITIES),
        "phone": f"06{rng.randint(0, 99_999_999):08d}",
        "ins": with_key(
            f"{1 if sex == 'M' else 2}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}"
            f"75{rng.randint(0, 999_999):06d}"
        )
        if rng.random() < 0.5
        else None,
    }


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 4:
        return text
    position = rng.randrange(1, len(text) - 1)
    if rng.random() < 0.5:
        return text[:position] + text[position + 1 :]  # a letter dropped
    return text[:position] + text[position + 1] + text[position] + text[position + 2 :]


def variant(rng: random.Random, original: dict[str, Any]) -> dict[str, Any]:
    """The same person as another site typed it: case and accents, a typo, a married
    name, first names in another order, a swapped day/month, a missing birthplace."""
    copy = dict(original)
    change = rng.randrange(9)
    if change == 7:
        field = rng.choice(
            ["address_line", "address_extra", "city", "postcode", "phone", "ins", "house_number"]
        )
        if copy.get(field):
            copy[field] = _typo(rng, str(copy[field]))
        return copy
    if change == 8:
        copy[rng.choice(["city", "phone", "ins", "address_line", "sex"])] = None
        return copy
    if change == 0:
        copy["birth_name"] = original["birth_name"].upper()
    elif change == 1:
        copy["birth_name"] = _typo(rng, original["birth_name"])
    elif change == 2 and original["sex"] == "F":
        copy["used_name"] = rng.choice(SURNAMES)  # a married name beside the birth name
    elif change == 3:
        copy["first_names"] = " ".join(reversed(original["first_names"].split()))
    elif change == 4:
        year, month, day = original["birth_date"].split("-")
        if int(day) <= 12:
            copy["birth_date"] = f"{year}-{day}-{month}"
    elif change == 5:
        copy["birthplace"] = None
    else:
        copy["first_name"] = _typo(rng, original["first_name"])
    return copy


def population(
    size: int, duplicates: int, seed: int = 7
) -> tuple[list[dict[str, Any]], set[tuple[int, int]]]:
    """``size`` people and ``duplicates`` second records of some of them; the truth is
    the set of index pairs (i < j) that are the same person."""
    rng = random.Random(seed)
    people = [person(rng, n) for n in range(size)]
    records = list(people)
    truth: set[tuple[int, int]] = set()
    for source in rng.sample(range(size), duplicates):
        truth.add((source, len(records)))
        records.append(variant(rng, people[source]))
    return records, truth
