"""``maskgen amodal analyze``."""

from __future__ import annotations

import argparse


def add_analyze_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` to the ``amodal`` group (placeholder until it lands)."""
