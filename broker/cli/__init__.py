"""The ``nhi-broker`` command line (Typer + Rich)."""
