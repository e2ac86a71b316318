"""The matching model's parameters, as plain data: per comparison level its m (share of
true matches at that level) and u (share of non-matches), the prior probability that two
records match, and the two decision thresholds. JSON in, JSON out, so that a model
trained once (``training.train``) is persisted and loaded by every hub process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from maillage.errors import ConfigurationError
from maillage.identity.compare import CATALOG, DEFAULT_COMPARISONS

FORMAT_VERSION: Final = 1
PROBABILITY_FLOOR: Final = 1e-9  # keeps log2(m/u) finite for a level never observed

# Starting m/u before any training for a comparison without its own values below: rough
# shares by number of levels. The m of the first level is high, u of "else" is high.
_DEFAULT_M: Final[dict[int, tuple[float, ...]]] = {
    2: (0.9, 0.1),
    3: (0.95, 0.03, 0.02),
    4: (0.9, 0.05, 0.03, 0.02),
    5: (0.85, 0.06, 0.05, 0.02, 0.02),
    6: (0.85, 0.05, 0.01, 0.05, 0.02, 0.02),
}
_DEFAULT_U: Final[dict[int, tuple[float, ...]]] = {
    2: (0.01, 0.99),
    3: (0.01, 0.05, 0.94),
    4: (0.001, 0.005, 0.02, 0.974),
    5: (0.002, 0.001, 0.004, 0.03, 0.963),
    6: (0.002, 0.001, 0.0001, 0.004, 0.03, 0.9629),
}

# Hand-set m/u of the French identity comparisons, by comparison, for a territory's base
# (levels in ``compare.CATALOG`` order). u is the share of two *different* persons of
# the territory at the level: half of them share a sex, one in ~20,000 a birth date, a
# few in a hundred a town or a postcode (a territory is a few dozen towns, and
# neighbouring postcodes differ by one digit), a few in a thousand a street; almost
# none a phone or an INS. m is the share of the registrations of one person: about one
# in ten has moved or typed another address, a name or first name has a typo a few times
# in a hundred. Training replaces all of them.
_FRENCH_DEFAULTS: Final[dict[str, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    # exact, birth/used cross, swapped with first name, jw 0.92, jw 0.80, else
    "name": (
        (0.85, 0.04, 0.005, 0.07, 0.02, 0.015),
        (0.002, 0.002, 0.0005, 0.003, 0.02, 0.9725),
    ),
    # exact, in the other list, swapped with name, jw 0.92, jw 0.80, else
    "first_names": (
        (0.85, 0.05, 0.005, 0.06, 0.02, 0.015),
        (0.01, 0.01, 0.0005, 0.005, 0.02, 0.9545),
    ),
    # exact, day/month swapped, one typo, two typos, else
    "birth_date": ((0.95, 0.01, 0.025, 0.01, 0.005), (5e-5, 2e-5, 0.001, 0.01, 0.98893)),
    "sex": ((0.98, 0.02), (0.5, 0.5)),
    # exact, same department, else
    "birthplace": ((0.95, 0.03, 0.02), (0.01, 0.05, 0.94)),
    # exact, 1 edit, 2 edits, else
    "ins": ((0.95, 0.03, 0.01, 0.01), (1e-6, 1e-5, 1e-4, 0.999889)),
    # exact, 1 edit, else
    "postcode": ((0.85, 0.05, 0.1), (0.05, 0.3, 0.65)),
    # exact, jw 0.92, jw 0.80, else
    "city": ((0.85, 0.02, 0.03, 0.1), (0.05, 0.005, 0.05, 0.895)),
    "address_line": ((0.82, 0.04, 0.04, 0.1), (0.01, 0.005, 0.08, 0.905)),
    # exact, 1 edit, else
    "phone": ((0.9, 0.03, 0.07), (1e-4, 5e-4, 0.9994)),
}


@dataclass(frozen=True, slots=True)
class LevelParams:
    name: str
    m: float
    u: float

    @property
    def weight(self) -> float:
        """The match weight of this level: log2(m / u)."""
        return math.log2(max(self.m, PROBABILITY_FLOOR) / max(self.u, PROBABILITY_FLOOR))


@dataclass(frozen=True, slots=True)
class ComparisonParams:
    name: str
    levels: tuple[LevelParams, ...]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Match probabilities: at or above ``auto_link`` the hub links, between ``review``
    and ``auto_link`` the pair goes to the identitovigilance cell, below it nothing."""

    auto_link: float = 0.99
    review: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.auto_link < 1.0:
            raise ConfigurationError(
                "identity thresholds need 0 < review <= auto_link < 1 "
                f"(got review={self.review}, auto_link={self.auto_link})"
            )


@dataclass(frozen=True, slots=True)
class Model:
    comparisons: tuple[ComparisonParams, ...]
    prior: float = 1e-4  # probability that two random records are the same person
    thresholds: Thresholds = field(default_factory=Thresholds)
    trained: dict[str, Any] = field(default_factory=dict)  # how/when, for the record

    def comparison(self, name: str) -> ComparisonParams:
        for params in self.comparisons:
            if params.name == name:
                return params
        raise KeyError(name)

    def with_thresholds(self, auto_link: float, review: float) -> Model:
        return Model(self.comparisons, self.prior, Thresholds(auto_link, review), self.trained)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "prior": self.prior,
            "thresholds": asdict(self.thresholds),
            "comparisons": [
                {"name": c.name, "levels": [asdict(level) for level in c.levels]}
                for c in self.comparisons
            ],
            "trained": self.trained,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        if data.get("format") != FORMAT_VERSION:
            raise ConfigurationError(
                f"identity model format {data.get('format')!r} is not {FORMAT_VERSION}: "
                "train the model again with this version of the hub"
            )
        comparisons = []
        for item in data["comparisons"]:
            name = item["name"]
            known = CATALOG.get(name)
            levels = tuple(
                LevelParams(str(level["name"]), float(level["m"]), float(level["u"]))
                for level in item["levels"]
            )
            if known is None or tuple(level.name for level in levels) != known.levels:
                raise ConfigurationError(
                    f"identity model comparison {name!r} does not match this hub's levels: "
                    "train the model again"
                )
            comparisons.append(ComparisonParams(name, levels))
        thresholds = data.get("thresholds") or {}
        return cls(
            comparisons=tuple(comparisons),
            prior=float(data["prior"]),
            thresholds=Thresholds(**thresholds),
            trained=dict(data.get("trained") or {}),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        temporary.replace(path)  # a reader never sees half a model

    @classmethod
    def load(cls, path: Path) -> Model:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"cannot read the identity model {path}: {error}") from None
        return cls.from_dict(data)


def default_model(
    names: Sequence[str] = DEFAULT_COMPARISONS, thresholds: Thresholds | None = None
) -> Model:
    """An untrained model with hand-set m/u: usable before the first training run."""
    comparisons = []
    for name in names:
        levels = CATALOG[name].levels
        size = len(levels)
        m, u = _FRENCH_DEFAULTS.get(name, (_DEFAULT_M[size], _DEFAULT_U[size]))
        comparisons.append(
            ComparisonParams(
                name, tuple(LevelParams(n, mi, ui) for n, mi, ui in zip(levels, m, u, strict=True))
            )
        )
    return Model(tuple(comparisons), thresholds=thresholds or Thresholds())
