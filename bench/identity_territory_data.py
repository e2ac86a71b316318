"""A synthetic French territorial identity set: persons registered at the demo
territory's sites, each registration a FHIR Patient as a desk typed it.

    .venv/bin/python -m bench.identity_territory_data [--persons 20000] [--seed 2026]
        [--out bench/out/identity_territory]

Everything is invented: surnames and first names are drawn from lists of common French
ones (not patient data) and combined at random, birthplaces are INSEE-shaped codes drawn
at random, addresses are in the demo territory's fictitious 99xxx postal codes, INS are
test NIRs (``urn:oid:1.2.250.1.213.1.4.10``) built from the traits with a valid key.

Each person is registered at 1–3 of the five sites (``maillage.demo.sites.SITES``), each
registration with the site's IPP (identifier type PI). About 40 % of registrations are
qualified (RNIV QUAL: the INS and the INSi traits — upper case, the whole first names
list, the birthplace); the others (PROV or VALI, no INS) carry 0–3 of the desk
variations real registrations show: the married name typed as the birth name or the
birth name alone, accents dropped, case, hyphen or space, apostrophes, particles moved
or glued (``Fontaine (de la)``, ``DELAFONTAINE``), Saint/St, a compound first name split,
first names in another order or only the first one, day and month swapped, one or two
typos in a name, the birthplace missing, another or no address, no phone.

Twins (~1 % of persons: same birth name, birth date and birthplace, other first names,
often the same address) and homonyms (~0.5 %: same names and birth date, another
birthplace and address) are listed so that the benchmark can count wrong merges.

Deterministic: the same ``persons`` and ``seed`` give the same set.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from maillage.demo.sites import SITES, V2_IDENTIFIER_TYPE_SYSTEM
from maillage.identity.checks import IDENTITY_RELIABILITY_SYSTEM, IDENTITY_RELIABILITY_URL
from maillage.identity.ins import OID_NIR_TEST, with_key
from maillage.identity.patient_traits import BIRTH_PLACE_URL, INSEE_CODE_URL

DEFAULT_PERSONS = 20_000
DEFAULT_SEED = 2026
TWIN_SHARE = 0.01
HOMONYM_SHARE = 0.005
QUALIFIED_SHARE = 0.40
SITE_COUNTS = (1, 2, 3)
SITE_COUNT_WEIGHTS = (0.5, 0.3, 0.2)
# the number of desk variations of an unqualified registration
VARIATION_COUNTS = (0, 1, 2, 3)
VARIATION_WEIGHTS = (0.3, 0.35, 0.25, 0.1)
INSEE_COMMUNE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"


# Common French surnames, most frequent first (drawn with Zipf-like weights), then
# names with the shapes desks write many ways: particles, Saint, apostrophes, hyphens.
def _words(text: str) -> list[str]:
    """A list written as words; ``_`` joins the words of one name (``Le_Goff``)."""
    return [word.replace("_", " ") for word in text.split()]


SURNAMES = _words(
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel "
    "Lefèvre Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine "
    "Rousseau Vincent Muller Lefebvre Faure André Mercier Blanc Guérin Boyer Garnier "
    "Chevalier François Legrand Gauthier Garcia Perrin Robin Clément Morin Nicolas Henry "
    "Roussel Mathieu Gautier Masson Marchand Duval Denis Dumont Marie Lemaire Noël Meyer "
    "Dufour Meunier Brun Blanchard Giraud Joly Rivière Lucas Brunet Gaillard Barbier Arnaud "
    "Martinez Gérard Roche Renard Schmitt Roy Leroux Colin Vidal Caron Picard Roger Fabre "
    "Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoît Rey Leclerc "
    "Payet Rolland Leclercq Guillaume Lecomte Lopez Jean Dupuy Guillot Hubert Berger Carpentier "
    "Sanchez Dupuis Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein "
    "Jacquet Adam Paris Poirier Marty Aubry Guyot Carré Charles Renault Charpentier Ménard "
    "Maillard Baron Bertin Bailly Hervé Schneider Fernandez Collet Léger Bouvier Julien "
    "Prévost Millet Perrot Daniel Cousin Germain Breton Besson Langlois Rémy Pelletier "
    "Lévêque Perrier Leblanc Barré Lebrun Marchal Weber Mallet Hamon Boulanger Jacob Monnier "
    "Michaud Rodriguez Guichard Gillet Étienne Grondin Poulain Tessier Chevallier Collin "
    "Chauvin Bouchet Gay Lemaître Bénard Maréchal Humbert Reynaud Antoine Hoarau Perret "
    "Barthélemy Cordier Pichon Lejeune Gilbert Lamy Delaunay Pasquier Carlier Laporte "
    "Quéré Le_Goff Le_Gall Le_Roux Kerbrat Cœur Lœuillet Hénaff"
)
SHAPED_SURNAMES = (
    "de la Fontaine",
    "de la Tour",
    "de la Roche",
    "du Pont",
    "du Bois",
    "de Villiers",
    "de Lattre",
    "des Forges",
    "D'Arcy",
    "D'Almeida",
    "D'Hondt",
    "L'Hermite",
    "N'Diaye",
    "Saint-Martin",
    "Saint-Pierre",
    "Saint-Cyr",
    "Sainte-Marie",
    "Saint-Jean",
    "Martin-Dupont",
    "Le Bihan",
    "Le Guen",
    "Lefèvre-Morin",
    "Bernard-Léger",
    "de Saint-Exupéry",
)
FIRST_M = _words(
    "Jean Pierre Michel André Philippe Louis Nicolas François Henri Bernard Alain Daniel "
    "Jacques Patrick Christian Éric Thierry Laurent Stéphane Olivier Julien Sébastien Frédéric "
    "Christophe David Lucas Hugo Théo Nathan Gabriel Léo Raphaël Arthur Jules Adam "
    "Maël Noah Ethan Paul Tom Sacha Mathis Enzo Baptiste Antoine Maxime Alexandre Thomas "
    "Quentin Clément Romain Guillaume Benjamin Mathieu Yves Marcel Roger René Gérard Noël"
)
FIRST_M_COMPOUND = (
    "Jean-Pierre",
    "Jean-Paul",
    "Jean-Marc",
    "Jean-Baptiste",
    "Jean-Luc",
    "Pierre-Louis",
    "Jean-François",
    "Marc-Antoine",
    "Jean-Claude",
)
FIRST_F = _words(
    "Marie Jeanne Françoise Monique Catherine Nathalie Isabelle Sylvie Anne Martine Christine "
    "Sophie Valérie Sandrine Céline Stéphanie Julie Aurélie Émilie Camille Léa Manon Chloé "
    "Inès Emma Jade Louise Alice Lina Rose Anna Ambre Léna Zoé Juliette Mila Lou Agathe "
    "Hélène Claire Élodie Mathilde Laura Pauline Margaux Charlotte Lucie Océane Noémie "
    "Élise Thérèse Simone Odette Yvette Geneviève Josiane Brigitte Chantal Danielle Agnès"
)
FIRST_F_COMPOUND = (
    "Marie-Claire",
    "Anne-Sophie",
    "Marie-Hélène",
    "Marie-Christine",
    "Anne-Marie",
    "Marie-Thérèse",
    "Marie-Laure",
    "Marie-France",
    "Anne-Laure",
)
STREETS = (
    "rue de la République",
    "rue Victor Hugo",
    "avenue Jean Jaurès",
    "place du Marché",
    "chemin des Vignes",
    "boulevard Gambetta",
    "impasse des Lilas",
    "rue Saint-Michel",
    "allée des Chênes",
    "rue Pasteur",
    "rue de la Gare",
    "rue du Moulin",
    "route de Maillebourg",
    "rue des Écoles",
    "avenue de la Libération",
    "rue Jules Ferry",
    "rue du Château",
    "place de l'Église",
    "rue des Tilleuls",
    "chemin de la Croix",
    "rue de la Paix",
    "rue Nationale",
    "rue du Général de Gaulle",
    "rue des Acacias",
    "rue Sainte-Anne",
    "quai de la Maille",
    "rue des Jardins",
    "lotissement les Peupliers",
    "rue de Verdun",
    "rue Émile Zola",
    "rue de Bretagne",
    "rue du Stade",
    "rue des Fontaines",
    "impasse du Lavoir",
    "rue de la Mairie",
    "rue Anatole France",
    "rue des Mimosas",
    "allée des Bruyères",
    "rue de Brest",
    "rue du Port",
    "chemin du Halage",
    "rue Saint-Yves",
    "place des Halles",
    "rue des Genêts",
    "résidence du Parc",
    "rue Jean Moulin",
    "rue des Camélias",
    "rue de l'Argoat",
)
# towns of the territory: the five sites' towns and villages around them (fictitious)
VILLAGES = (
    ("Maillebourg", "99100"),
    ("Ardenval", "99200"),
    ("Lormecourt", "99300"),
    ("Bréhaut-sur-Maille", "99400"),
    ("Sainte-Oriane", "99500"),
    ("Saint-Aubin-la-Maille", "99110"),
    ("Vieux-Moulin", "99120"),
    ("Le Plessis-d'Ardenval", "99210"),
    ("Cormeilles-en-Maille", "99220"),
    ("Fontenay-le-Vieux", "99310"),
    ("Lormecourt-le-Bas", "99320"),
    ("Bréhaut-Plage", "99410"),
    ("Les Essarts", "99420"),
    ("Saint-Oriane-des-Bois", "99510"),
    ("La Chapelle-sur-Maille", "99520"),
    ("Saint-Gildas-de-Maille", "99130"),
    ("Kervennec", "99140"),
    ("Plouzelin", "99150"),
    ("Trégoret", "99160"),
    ("Le Faouët-sur-Maille", "99170"),
    ("Montaubert", "99230"),
    ("Val-d'Ardenne", "99240"),
    ("Saint-Méloir-des-Champs", "99250"),
    ("La Roche-Maillard", "99260"),
    ("Bourg-l'Abbé", "99270"),
    ("Lormel", "99330"),
    ("Guerlédan-la-Forêt", "99340"),
    ("Pont-Scorvel", "99350"),
    ("Sainte-Anne-du-Bois", "99360"),
    ("Les Moulins-Neufs", "99370"),
    ("Bréhec", "99430"),
    ("Port-Maillard", "99440"),
    ("Saint-Cast-de-l'Isle", "99450"),
    ("Kerlouan-Maille", "99460"),
    ("La Ville-Even", "99470"),
    ("Oriane-les-Pins", "99530"),
    ("Le Vieux-Bourg", "99540"),
    ("Saint-Yvi-sur-Oust", "99550"),
    ("Plessala-le-Haut", "99560"),
    ("La Lande-Maillée", "99570"),
)
# towns drawn by size: the five sites' towns first, then villages, most populous first
VILLAGE_WEIGHTS = [1.0 / (rank + 3) for rank in range(len(VILLAGES))]
COUNTRIES = ("99109", "99127", "99134", "99139", "99350", "99351", "99352", "99341", "99132")


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    sex: str  # M / F
    birth_name: str
    married_name: str | None
    first_names: tuple[str, ...]
    birth_date: dt.date
    birthplace: str
    nir: str
    house_number: str
    street: str
    city: str
    postcode: str
    phone: str | None


@dataclass(frozen=True, slots=True)
class TerritorySet:
    patients: list[dict[str, Any]]
    record_ids: list[str]  # one per Patient: "<site code>/<IPP>"
    truth: dict[str, str]  # record id -> person id
    twins: list[tuple[str, str]]  # person id pairs
    homonyms: list[tuple[str, str]]
    variations: dict[str, int] = field(default_factory=dict)  # how often each was applied

    def records_of(self) -> dict[str, list[str]]:
        """Person id -> its record ids."""
        found: dict[str, list[str]] = {}
        for record, person in self.truth.items():
            found.setdefault(person, []).append(record)
        return found


# -- persons ------------------------------------------------------------------------------


def _zipf_weights(size: int) -> list[float]:
    return [1.0 / (rank + 8) for rank in range(size)]


class _Draw:
    """The random draws of one generated set (one seeded ``random.Random``)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.surnames = [*SURNAMES, *SHAPED_SURNAMES]
        self.surname_weights = [
            *_zipf_weights(len(SURNAMES)),
            *([0.01] * len(SHAPED_SURNAMES)),
        ]
        departments = [f"{n:02d}" for n in range(1, 96) if n != 20] + ["2A", "2B"]
        # birthplaces: most persons born in a few departments around the territory
        local = [f"{d}{rng.randint(1, 400):03d}" for d in ("35", "22", "56", "29", "44")]
        local += [f"{rng.choice(('35', '22', '56', '29', '44'))}{n:03d}" for n in range(1, 60)]
        elsewhere = [f"{rng.choice(departments)}{rng.randint(1, 600):03d}" for _ in range(800)]
        self.local_places = sorted(set(local))
        self.other_places = sorted(set(elsewhere))
        self.order_numbers: dict[str, int] = {}
        self._cumulative: dict[int, tuple[Sequence[float], list[float]]] = {}
        self.first_weights = {
            size: _zipf_weights(size)
            for size in {len(FIRST_M), len(FIRST_F), len(FIRST_M_COMPOUND), len(FIRST_F_COMPOUND)}
        }

    def weighted(self, items: Sequence[Any], weights: Sequence[float]) -> Any:
        cached = self._cumulative.get(id(weights))
        if cached is None or cached[0] is not weights:  # kept alive: the id is not reused
            cached = self._cumulative[id(weights)] = (weights, list(itertools.accumulate(weights)))
        return self.rng.choices(items, cum_weights=cached[1])[0]

    def surname(self) -> str:
        return str(self.weighted(self.surnames, self.surname_weights))

    def first_names(self, sex: str, avoid: Sequence[str] = ()) -> tuple[str, ...]:
        rng = self.rng
        simple = FIRST_M if sex == "M" else FIRST_F
        compound = FIRST_M_COMPOUND if sex == "M" else FIRST_F_COMPOUND
        count = self.weighted((1, 2, 3, 4), (0.3, 0.4, 0.25, 0.05))
        names: list[str] = []
        taken = {_plain(name) for name in avoid}
        while len(names) < count:
            pool = compound if rng.random() < 0.12 else simple
            name = self.weighted(pool, self.first_weights[len(pool)])
            parts = {_plain(part) for part in name.split("-")} | {_plain(name)}
            if parts & taken:
                continue
            taken |= parts
            names.append(name)
        return tuple(names)

    def birthplace(self) -> str:
        roll = self.rng.random()
        if roll < 0.6:
            return str(self.rng.choice(self.local_places))
        if roll < 0.93:
            return str(self.rng.choice(self.other_places))
        return str(self.rng.choice(COUNTRIES))

    def birth_date(self) -> dt.date:
        start = dt.date(1930, 1, 1).toordinal()
        end = dt.date(2024, 12, 31).toordinal()
        return dt.date.fromordinal(self.rng.randint(start, end))

    def nir(self, sex: str, birth_date: dt.date, birthplace: str) -> str:
        prefix = f"{1 if sex == 'M' else 2}{birth_date.year % 100:02d}{birth_date.month:02d}"
        prefix += birthplace
        # the order number within the commune and month: distinct, like the register's
        order = self.order_numbers.get(prefix, self.rng.randint(1, 400)) + self.rng.randint(1, 5)
        self.order_numbers[prefix] = order
        return with_key(f"{prefix}{order % 1000:03d}")

    def address(self) -> tuple[str, str, str, str]:
        town, postcode = self.weighted(VILLAGES, VILLAGE_WEIGHTS)
        return str(self.rng.randint(1, 150)), self.rng.choice(STREETS), town, postcode

    def phone(self) -> str | None:
        if self.rng.random() < 0.12:
            return None
        return f"0{self.rng.choice('6767672')}{self.rng.randint(0, 99_999_999):08d}"

    def person(self, number: int) -> Person:
        rng = self.rng
        sex = rng.choice("MF")
        birth_date = self.birth_date()
        birthplace = self.birthplace()
        married = None
        if sex == "F" and birth_date.year < 2000 and rng.random() < 0.55:
            married = self.surname()
        house, street, city, postcode = self.address()
        return Person(
            id=f"P{number:07d}",
            sex=sex,
            birth_name=self.surname(),
            married_name=married,
            first_names=self.first_names(sex),
            birth_date=birth_date,
            birthplace=birthplace,
            nir=self.nir(sex, birth_date, birthplace),
            house_number=house,
            street=street,
            city=city,
            postcode=postcode,
            phone=self.phone(),
        )

    def twin(self, of: Person, number: int) -> Person:
        """Same birth name, birth date and birthplace; other first names; often the same
        home (and phone) when young."""
        rng = self.rng
        sex = rng.choice("MF")
        married = None
        if sex == "F" and of.birth_date.year < 2000 and rng.random() < 0.55:
            married = self.surname()
        same_home = of.birth_date.year >= 2000 or rng.random() < 0.3
        house, street, city, postcode = (
            (of.house_number, of.street, of.city, of.postcode) if same_home else self.address()
        )
        return Person(
            id=f"P{number:07d}",
            sex=sex,
            birth_name=of.birth_name,
            married_name=married,
            first_names=self.first_names(sex, avoid=of.first_names),
            birth_date=of.birth_date,
            birthplace=of.birthplace,
            nir=self.nir(sex, of.birth_date, of.birthplace),
            house_number=house,
            street=street,
            city=city,
            postcode=postcode,
            phone=of.phone if same_home and rng.random() < 0.5 else self.phone(),
        )

    def homonym(self, of: Person, number: int) -> Person:
        """Same names, sex and birth date; another birthplace, home and phone."""
        birthplace = self.birthplace()
        while birthplace == of.birthplace:
            birthplace = self.birthplace()
        house, street, city, postcode = self.address()
        return replace(
            of,
            id=f"P{number:07d}",
            married_name=self.surname() if of.married_name else None,
            birthplace=birthplace,
            nir=self.nir(of.sex, of.birth_date, birthplace),
            house_number=house,
            street=street,
            city=city,
            postcode=postcode,
            phone=self.phone(),
        )


# -- how a desk types a name --------------------------------------------------------------


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("Œ", "OE"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _insi(text: str) -> str:
    """INSi traits: upper case without accents, hyphens and apostrophes kept."""
    return _plain(text).upper()


def _case(rng: random.Random, text: str) -> str:
    style = rng.random()
    if style < 0.45:
        return text.upper()
    if style < 0.6:
        return _plain(text).upper()
    if style < 0.7:
        return _plain(text)
    if style < 0.75:
        return text.lower()
    return text


_PARTICLES = ("de la ", "de l'", "du ", "des ", "de ", "d'", "l'")


def _reshape_name(rng: random.Random, name: str) -> str:
    """The shape changes a desk makes to a name that has particles, Saint, apostrophes
    or hyphens; a name without them comes back unchanged."""
    lower = name.lower()
    options: list[str] = []
    for particle in _PARTICLES:
        if lower.startswith(particle) and particle.endswith(" "):
            rest = name[len(particle) :]
            head = name[: len(particle) - 1]
            options += [
                f"{rest} ({head})",  # "Fontaine (de la)"
                f"{rest} {head}",  # "FONTAINE DE LA"
                name.replace(" ", ""),  # "delaFontaine"
                name.title(),  # "De La Fontaine"
            ]
            break
    if "'" in name:
        options += [name.replace("'", " "), name.replace("'", ""), name.replace("'", "’")]
    if "Saint" in name:
        options += [name.replace("Saint", "St"), name.replace("Sainte", "Ste")]
    if "-" in name:
        options += [name.replace("-", " "), name.replace("-", "")]
    if " " in name and not options:
        options += [name.replace(" ", ""), name.replace(" ", "-")]
    return rng.choice(options) if options else name


_KEYBOARD_NEIGHBOURS = {
    "a": "zqs",
    "e": "zrd",
    "i": "uok",
    "o": "ipl",
    "u": "yij",
    "n": "bm",
    "m": "nl",
    "r": "et",
    "t": "ry",
    "s": "qdz",
    "l": "km",
    "c": "xv",
    "d": "sf",
}


def _typo(rng: random.Random, text: str) -> str:
    """One typing error inside a name (never its first letter): a letter dropped,
    doubled, swapped with its neighbour or replaced by a key next to it."""
    if len(text) < 4:
        return text
    position = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    letter = text[position]
    if kind == 0:
        return text[:position] + text[position + 1 :]
    if kind == 1:
        return text[:position] + letter + text[position:]
    if kind == 2:
        return text[:position] + text[position + 1] + letter + text[position + 2 :]
    neighbours = _KEYBOARD_NEIGHBOURS.get(letter.lower())
    if not neighbours:
        return text[:position] + text[position + 1 :]
    other = rng.choice(neighbours)
    return text[:position] + (other.upper() if letter.isupper() else other) + text[position + 1 :]


# -- registrations ------------------------------------------------------------------------

VARIATIONS = (
    "married_as_birth_name",
    "birth_name_only",
    "name_shape",
    "first_names_split",
    "first_names_order",
    "first_given_only",
    "day_month_swap",
    "name_typo",
    "first_name_typo",
    "two_typos",
    "no_birthplace",
    "other_address",
    "no_address",
    "no_phone",
)
VARIATION_WEIGHT = (4, 3, 5, 3, 3, 5, 2, 4, 4, 2, 5, 4, 2, 4)


@dataclass
class _Traits:
    """What a desk typed for one registration."""

    birth_name: str
    used_name: str | None
    given: list[str]
    birth_date: dt.date | str
    birthplace: str | None
    address: tuple[str, str, str, str] | None
    phone: str | None


def _registration_traits(
    draw: _Draw, person: Person, qualified: bool, applied: dict[str, int]
) -> _Traits:
    rng = draw.rng
    house_etc = (person.house_number, person.street, person.city, person.postcode)
    if qualified:
        # the INSi traits, copied from the teleservice; the used name, address and phone
        # are the desk's
        return _Traits(
            birth_name=_insi(person.birth_name),
            used_name=_case(rng, person.married_name) if person.married_name else None,
            given=[_insi(name) for name in person.first_names],
            birth_date=person.birth_date,
            birthplace=person.birthplace,
            address=house_etc if rng.random() < 0.9 else draw.address(),
            phone=person.phone if rng.random() < 0.9 else None,
        )
    traits = _Traits(
        birth_name=person.birth_name,
        used_name=person.married_name,
        given=list(person.first_names),
        birth_date=person.birth_date,
        birthplace=person.birthplace,
        address=house_etc,
        phone=person.phone,
    )
    count = draw.weighted(VARIATION_COUNTS, VARIATION_WEIGHTS)
    chosen: list[str] = []
    while len(chosen) < count:
        variation = draw.weighted(VARIATIONS, VARIATION_WEIGHT)
        if variation not in chosen:
            chosen.append(variation)
    for variation in chosen:
        if _apply(rng, draw, traits, variation):
            applied[variation] = applied.get(variation, 0) + 1
    case = _case  # each field typed in the desk's case habit
    traits.birth_name = case(rng, traits.birth_name)
    traits.used_name = case(rng, traits.used_name) if traits.used_name else None
    given_case = rng.random()
    traits.given = [
        name.upper() if given_case < 0.3 else _plain(name) if given_case < 0.45 else name
        for name in traits.given
    ]
    return traits


def _apply(rng: random.Random, draw: _Draw, traits: _Traits, variation: str) -> bool:
    """Apply one desk variation; False when it does not apply to this person."""
    if variation == "married_as_birth_name":
        if not traits.used_name:
            return False
        traits.birth_name, traits.used_name = traits.used_name, None
    elif variation == "birth_name_only":
        if not traits.used_name:
            return False
        traits.used_name = None
    elif variation == "name_shape":
        reshaped = _reshape_name(rng, traits.birth_name)
        if reshaped == traits.birth_name:
            return False
        traits.birth_name = reshaped
    elif variation == "first_names_split":
        split = [part for name in traits.given for part in name.split("-")]
        if len(split) == len(traits.given):
            return False
        traits.given = split if rng.random() < 0.5 else [" ".join(split)]
    elif variation == "first_names_order":
        if len(traits.given) < 2:
            return False
        rest = traits.given[1:]
        rng.shuffle(rest)
        traits.given = [*rest, traits.given[0]] if rng.random() < 0.7 else traits.given[::-1]
    elif variation == "first_given_only":
        if len(traits.given) < 2:
            return False
        traits.given = traits.given[:1]
    elif variation == "day_month_swap":
        date = traits.birth_date
        if not isinstance(date, dt.date) or date.day > 12 or date.day == date.month:
            return False
        traits.birth_date = f"{date.year}-{date.day:02d}-{date.month:02d}"
    elif variation in ("name_typo", "two_typos"):
        traits.birth_name = _typo(rng, traits.birth_name)
        if variation == "two_typos":
            if rng.random() < 0.5:
                traits.birth_name = _typo(rng, traits.birth_name)
            else:
                traits.given[0] = _typo(rng, traits.given[0])
    elif variation == "first_name_typo":
        traits.given[0] = _typo(rng, traits.given[0])
    elif variation == "no_birthplace":
        traits.birthplace = None
    elif variation == "other_address":
        traits.address = draw.address()
    elif variation == "no_address":
        traits.address = None
    elif variation == "no_phone":
        if traits.phone is None:
            return False
        traits.phone = None
    return True


def _patient(
    site_index: int, ipp: str, person: Person, traits: _Traits, status: str
) -> dict[str, Any]:
    site = SITES[site_index]
    identifiers: list[dict[str, Any]] = [
        {
            "use": "usual",
            "type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": "PI"}]},
            "system": site.ipp_system,
            "value": ipp,
        }
    ]
    if status == "QUAL":
        identifiers.append(
            {
                "use": "official",
                "type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": "NH"}]},
                "system": OID_NIR_TEST,
                "value": person.nir,
            }
        )
    extensions: list[dict[str, Any]] = [
        {
            "url": IDENTITY_RELIABILITY_URL,
            "extension": [
                {
                    "url": "identityStatus",
                    "valueCoding": {"system": IDENTITY_RELIABILITY_SYSTEM, "code": status},
                }
            ],
        }
    ]
    if traits.birthplace:
        extensions.append(
            {
                "url": BIRTH_PLACE_URL,
                "valueAddress": {
                    "extension": [
                        {
                            "url": INSEE_CODE_URL,
                            "valueCoding": {
                                "system": INSEE_COMMUNE_SYSTEM,
                                "code": traits.birthplace,
                            },
                        }
                    ]
                },
            }
        )
    names: list[dict[str, Any]] = [
        {
            "use": "official",
            "family": traits.birth_name,
            "given": [g for g in traits.given if g.strip()],
        }
    ]
    if traits.used_name:
        names.append({"use": "usual", "family": traits.used_name})
    birth_date = traits.birth_date
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"{site.code.lower()}-{ipp}",
        "extension": extensions,
        "identifier": identifiers,
        "name": names,
        "gender": "male" if person.sex == "M" else "female",
        "birthDate": birth_date.isoformat() if isinstance(birth_date, dt.date) else birth_date,
    }
    if traits.address:
        house, street, city, postcode = traits.address
        patient["address"] = [
            {"use": "home", "line": [f"{house} {street}"], "city": city, "postalCode": postcode}
        ]
    if traits.phone:
        patient["telecom"] = [{"system": "phone", "value": traits.phone, "use": "mobile"}]
    return patient


def generate(persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED) -> TerritorySet:
    """``persons`` persons (twins and homonyms included in the count) and their
    registrations."""
    draw = _Draw(seed)
    rng = draw.rng
    people: list[Person] = []
    twins: list[tuple[str, str]] = []
    homonyms: list[tuple[str, str]] = []
    twin_count = round(persons * TWIN_SHARE)
    homonym_count = round(persons * HOMONYM_SHARE)
    base = persons - twin_count - homonym_count
    people = [draw.person(n) for n in range(base)]
    for _ in range(twin_count):
        of = rng.choice(people[:base])
        twin = draw.twin(of, len(people))
        people.append(twin)
        twins.append((of.id, twin.id))
    for _ in range(homonym_count):
        of = rng.choice(people[:base])
        homonym = draw.homonym(of, len(people))
        people.append(homonym)
        homonyms.append((of.id, homonym.id))
    order = list(range(len(people)))
    rng.shuffle(order)  # registrations arrive in no particular order of persons

    patients: list[dict[str, Any]] = []
    record_ids: list[str] = []
    truth: dict[str, str] = {}
    applied: dict[str, int] = {}
    next_ipp = [0] * len(SITES)
    site_weights = [3.0 if site.acute_care else 1.0 for site in SITES]
    for index in order:
        person = people[index]
        count = draw.weighted(SITE_COUNTS, SITE_COUNT_WEIGHTS)
        sites: list[int] = []
        while len(sites) < count:
            site = draw.weighted(range(len(SITES)), site_weights)
            if site not in sites:
                sites.append(site)
        for site in sites:
            next_ipp[site] += 1
            ipp = f"{site + 1}{next_ipp[site]:08d}"
            qualified = rng.random() < QUALIFIED_SHARE
            status = "QUAL" if qualified else ("VALI" if rng.random() < 0.55 else "PROV")
            traits = _registration_traits(draw, person, qualified, applied)
            record = f"{SITES[site].code}/{ipp}"
            patients.append(_patient(site, ipp, person, traits, status))
            record_ids.append(record)
            truth[record] = person.id
    return TerritorySet(
        patients=patients,
        record_ids=record_ids,
        truth=truth,
        twins=twins,
        homonyms=homonyms,
        variations=dict(sorted(applied.items())),
    )


def write(data: TerritorySet, out: Path) -> None:
    """``patients.ndjson``, ``truth.csv`` (record_id, person_id) and ``related.csv``
    (kind, person_a, person_b: the twins and homonyms)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "patients.ndjson").open("w", encoding="utf-8") as handle:
        for patient in data.patients:
            handle.write(json.dumps(patient, ensure_ascii=False) + "\n")
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "person_id"])
        writer.writerows(data.truth.items())
    with (out / "related.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "person_a", "person_b"])
        writer.writerows(("twin", a, b) for a, b in data.twins)
        writer.writerows(("homonym", a, b) for a, b in data.homonyms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=Path("bench/out/identity_territory"))
    args = parser.parse_args(argv)
    data = generate(args.persons, args.seed)
    write(data, args.out)
    print(
        f"{len(data.patients):,} Patients of {args.persons:,} persons, "
        f"{len(data.twins)} twin and {len(data.homonyms)} homonym pairs -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
