"""Score histograms of candidates, as PNG bytes (matplotlib's Agg canvas; no pyplot global state)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Colour of each review band in every chart and on the cards, strictest first.
BAND_COLOURS = {"strong": "#b2182b", "possible": "#ef8a62"}
OTHER_COLOUR = "#67a9cf"


def score_histogram_png(scores_by_band: Mapping[str, Sequence[float]], thresholds: Mapping[str, float],
                        title: str, bins: int = 30) -> bytes:
    """A stacked histogram of candidate scores per band, with each band's score threshold drawn.

    Args:
        scores_by_band: band name -> scores of the candidates in that band (cosine similarity).
        thresholds: band name -> the run's score threshold of that band (from the audit detail).
        title: the chart's title.
        bins: number of bins between the lowest and the highest score shown.

    Returns:
        The PNG file's bytes (800x320 pixels).
    """
    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = sorted(scores_by_band, key=lambda b: -thresholds.get(b, float("-inf")))
    data = [list(scores_by_band[b]) for b in names]
    everything = [s for d in data for s in d] + list(thresholds.values())
    if any(data):
        lo, hi = min(everything), max(everything)
        span = (lo - 0.02, hi + 0.02) if hi > lo else (lo - 0.1, hi + 0.1)
        ax.hist(data, bins=bins, range=span, stacked=True, label=[f"{b} ({len(d)})" for b, d in zip(names, data,
                strict=True)], color=[BAND_COLOURS.get(b, OTHER_COLOUR) for b in names])
    else:
        ax.text(0.5, 0.5, "no candidates in this run", ha="center", va="center", transform=ax.transAxes)
    for band, threshold in sorted(thresholds.items()):
        ax.axvline(threshold, color=BAND_COLOURS.get(band, OTHER_COLOUR), linestyle="--", linewidth=1)
        ax.annotate(f"{band} >= {threshold:.3f}", (threshold, 1.0), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel("score (cosine similarity)")
    ax.set_ylabel("candidates")
    ax.set_title(title, fontsize=10)
    if any(data):
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
