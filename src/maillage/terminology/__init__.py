"""Terminology: value set expansion over the shipped R4 code systems and value sets.

A pure engine (no SQL, no web): ``Terminology`` expands a value set, by canonical url,
into an ``Expansion`` (per system, listed codes or "every code of the system but
these"). The search layer gives it the stored ValueSets it read, which take precedence
over the shipped ones with the same url.
"""

from maillage.terminology.catalog import Catalog, Terminology, by_canonical, shipped
from maillage.terminology.codesystem import CodeSystemIndex
from maillage.terminology.expand import Expander, imports, split_canonical
from maillage.terminology.members import NO_SYSTEM, Expansion, Members

__all__ = [
    "NO_SYSTEM",
    "Catalog",
    "CodeSystemIndex",
    "Expander",
    "Expansion",
    "Members",
    "Terminology",
    "by_canonical",
    "imports",
    "shipped",
    "split_canonical",
]
