"""``maskgen amodal complete``."""

from __future__ import annotations

import argparse


def add_complete_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``complete`` to the ``amodal`` group (placeholder until it lands)."""
