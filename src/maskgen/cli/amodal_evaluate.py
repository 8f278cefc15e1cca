"""``maskgen amodal evaluate``: the amodal evaluation harness (owned by the formats/metrics work)."""

from __future__ import annotations

import argparse


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``amodal`` group (placeholder until the harness lands)."""
