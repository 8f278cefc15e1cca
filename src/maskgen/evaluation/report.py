"""Reports of an evaluation: Markdown table, plot of IoU against visible ratio, files on disk.

Public API::

    markdown_report(result: dict, title: str | None = None, command: str | None = None,
                    heading: str = "###") -> str
    plot_iou_vs_visible(result: dict, path: str | PathLike, n_bins: int = 10) -> None
    write_report(result: dict, out_dir: str | PathLike, force: bool = False,
                 command: str | None = None) -> list[Path]

``write_report`` writes ``metrics.json`` (everything but the per-instance list),
``metrics.md``, ``iou_vs_visible.png`` and ``per_instance.csv`` into ``out_dir``, each file
atomically. It refuses an existing ``out_dir`` unless ``force``; with ``force`` it replaces only
these four files.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.core.io import atomic_path, prepare_out_dir, write_json, write_text
from maskgen.core.metrics import OCCLUSION_BUCKETS

__all__ = ["markdown_report", "plot_iou_vs_visible", "write_report"]

_COLUMNS = (
    ("full_iou_dataset", "full IoU (dataset)"),
    ("full_iou_mean", "full IoU (per-instance mean)"),
    ("invisible_iou_dataset", "invisible IoU (dataset)"),
    ("invisible_iou_mean", "invisible IoU (per-instance mean, occluded only)"),
)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _yes_no(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def protocol_lines(protocol: dict[str, Any]) -> list[str]:
    """Bullet lines stating the protocol (visible masks, crop, OR with visible, method)."""
    vs = protocol.get("visible_source", "unknown")
    vs_text = {"gt": "ground-truth visible masks", "predicted": "predicted visible masks"}.get(
        vs, str(vs)
    )
    method = str(protocol.get("method", "unknown"))
    if protocol.get("baseline"):
        method += f" ({protocol.get('description', 'baseline')})"
    lines = [
        f"- Method: {method}",
        f"- Visible masks given to the method: {vs_text}",
        f"- Crop convention: {protocol.get('crop', 'unknown')}",
        f"- Prediction OR-ed with the visible mask: {_yes_no(protocol.get('or_visible', 'unknown'))}",
    ]
    skip = {"visible_source", "crop", "or_visible", "method", "baseline", "description"}
    for k, v in protocol.items():
        if k not in skip:
            lines.append(f"- {k.replace('_', ' ').capitalize()}: {_yes_no(v)}")
    return lines


def markdown_report(
    result: dict[str, Any],
    title: str | None = None,
    command: str | None = None,
    heading: str = "###",
) -> str:
    """Markdown: protocol bullets, then one table (overall + occlusion buckets), IoU in percent."""
    gt = result.get("ground_truth", {})
    out = []
    if title:
        out += [f"{heading} {title}", ""]
    if command:
        out += ["```", command, "```", ""]
    out += protocol_lines(result["protocol"])
    out.append(
        f"- Ground truth: {gt.get('path', '?')} ({gt.get('layout', '?')}, "
        f"{gt.get('n_images', '?')} images, {gt.get('n_instances', '?')} instances)"
    )
    out.append(
        "- IoU in percent. Dataset = Σintersection/Σunion; per-instance mean of IoUs. Invisible IoU counts "
        "only pixels outside the GT visible mask; its per-instance mean is over occluded instances. "
        "Occlusion ratio = |A∖V|/|A|, buckets right-closed."
    )
    out.append("")
    header = "| occlusion | instances | occluded | " + " | ".join(c[1] for c in _COLUMNS) + " |"
    out.append(header)
    out.append("|" + "---|" * (3 + len(_COLUMNS)))
    rows = [("all", result["overall"])] + [
        (f"{b} %" if b != "0" else "0 %", result["buckets"][b]) for b in OCCLUSION_BUCKETS
    ]
    for name, g in rows:
        cells = [name, str(g["n_instances"]), str(g["n_occluded"])] + [
            _pct(g[k]) for k, _ in _COLUMNS
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def _binned(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.clip(np.digitize(x, edges[1:-1], right=True), 0, len(edges) - 2)
    means = np.full(len(edges) - 1, np.nan)
    counts = np.zeros(len(edges) - 1, dtype=int)
    for b in range(len(edges) - 1):
        sel = idx == b
        counts[b] = int(sel.sum())
        if counts[b]:
            means[b] = float(y[sel].mean())
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, means, counts


def plot_iou_vs_visible(
    result: dict[str, Any], path: str | os.PathLike[str], n_bins: int = 10
) -> None:
    """PNG: per-instance full and invisible IoU against visible ratio, with binned means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = result.get("per_instance", [])
    vr = np.array([r["visible_ratio"] for r in recs], dtype=float)
    full = np.array([r["full_iou"] for r in recs], dtype=float)
    occ = [r for r in recs if r["invisible_iou"] is not None]
    vr_occ = np.array([r["visible_ratio"] for r in occ], dtype=float)
    inv = np.array([r["invisible_iou"] for r in occ], dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    rng = np.random.default_rng(0)
    for x, y, colour in ((vr, full, "tab:blue"), (vr_occ, inv, "tab:orange")):
        if len(x) > 4000:  # thin the cloud; the binned means use every instance
            keep = rng.choice(len(x), 4000, replace=False)
            x, y = x[keep], y[keep]
        ax.scatter(x, y, s=4, alpha=0.15, color=colour, linewidths=0)
    if len(vr):
        c, m, _ = _binned(vr, full, edges)
        ax.plot(c, m, "o-", color="tab:blue", label="full IoU (bin mean)")
    if len(vr_occ):
        c, m, _ = _binned(vr_occ, inv, edges)
        ax.plot(c, m, "s-", color="tab:orange", label="invisible IoU (bin mean, occluded)")
    proto = result.get("protocol", {})
    ax.set_title(
        f"{proto.get('method', '?')}: IoU vs visible ratio (visible masks: {proto.get('visible_source', '?')})",
        fontsize=9,
    )
    ax.set_xlabel("visible ratio |V| / |A|")
    ax.set_ylabel("per-instance IoU")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _csv(result: dict[str, Any]) -> str:
    lines = ["id,image_id,bucket,visible_ratio,full_iou,invisible_iou"]
    for r in result.get("per_instance", []):
        inv = "" if r["invisible_iou"] is None else f"{r['invisible_iou']:.6f}"
        lines.append(
            f"{r['id']},{r['image_id']},{r['bucket']},{r['visible_ratio']:.6f},{r['full_iou']:.6f},{inv}"
        )
    return "\n".join(lines) + "\n"


REPORT_MARKER = "metrics.json"


def write_report(
    result: dict[str, Any],
    out_dir: str | os.PathLike[str],
    force: bool = False,
    command: str | None = None,
) -> list[Path]:
    """Write the four report files into ``out_dir`` (see the module docstring); returns them.

    ``out_dir`` may be missing or empty; an earlier report (holding ``metrics.json``) is
    replaced only with ``force``; any other non-empty folder or a file is refused.
    """
    out = prepare_out_dir(out_dir, force, marker=REPORT_MARKER)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in result.items() if k != "per_instance"}
    if command:
        summary["command"] = command
    files = [
        out / "metrics.json",
        out / "metrics.md",
        out / "iou_vs_visible.png",
        out / "per_instance.csv",
    ]
    write_json(files[0], summary)
    write_text(
        files[1], markdown_report(result, title="Amodal completion metrics", command=command)
    )
    plot_iou_vs_visible(result, files[2])
    write_text(files[3], _csv(result))
    return files
