"""`dsdoctor demo`: being built (see the open issue); not registered until it works."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
