"""Command line: thin Typer commands that call services."""
