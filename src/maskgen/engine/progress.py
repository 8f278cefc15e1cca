"""Progress display: tqdm that stays silent in logs and on ranks other than 0 (docs/design.md, "The engine contract")."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from maskgen.engine.distributed import DistContext, is_main_process


def progress(
    iterable_or_total: Iterable[Any] | int,
    desc: str,
    initial: int = 0,
    ctx: DistContext | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr, shown only on a terminal (``disable=None``) and only on rank 0.

    Args:
        iterable_or_total: an iterable, or an int ``total`` -- then the bar iterates
            ``range(initial, total)``, so a resumed loop reads
            ``for step in progress(total, "train", initial=step): ...``; ``.update()`` and
            ``.set_postfix()`` work as usual.
        desc: the bar's label.
        initial: the count already done (a resumed run starts there).
        ctx: the process's DistContext; without it the active process group decides.
        **kwargs: passed to tqdm.
    """
    main = ctx.is_main if ctx is not None else is_main_process()
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs["disable"] = None if main else True
    if isinstance(iterable_or_total, int):
        total = iterable_or_total
        return tqdm(range(initial, total), desc=desc, total=total, initial=initial, **kwargs)
    total = kwargs.pop("total", None)
    if total is None and hasattr(iterable_or_total, "__len__"):
        total = len(iterable_or_total) + initial  # type: ignore[arg-type]
    return tqdm(iterable_or_total, desc=desc, total=total, initial=initial, **kwargs)
