"""Territorial identity: INS checks, French identity normalisation, blocking and
Fellegi–Sunter scoring, a model trained with Splink.

A pure layer: no SQL, no HTTP; it imports only ``errors`` and ``settings`` from the hub.
"""
