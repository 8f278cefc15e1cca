"""``maskgen amodal train``."""

from __future__ import annotations

import argparse


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``amodal`` group (placeholder until it lands)."""
