"""Maillage: the territorial health information hub of a GHT."""

__version__ = "0.1.0"
