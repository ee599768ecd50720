"""Text that overlaps in a figure (labels printed on each other): the report's plots are checked with it."""
from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text


def _texts(fig: Figure, renderer) -> list[tuple[str, object, object]]:
    """(name, window bbox, owner) of every visible, non-empty text and every legend frame of the figure."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        legend = ax.get_legend()
        skip = set(map(id, legend.get_texts())) if legend else set()
        shown_ticks = []
        for axis in (ax.xaxis, ax.yaxis):  # tick labels outside the view limits exist but are not drawn
            lo, hi = sorted(axis.get_view_interval())
            pad = 1e-9 * max(1.0, abs(hi - lo))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                labels = (tick.label1, tick.label2)
                skip.update(map(id, labels))
                if lo - pad <= tick.get_loc() <= hi + pad:
                    shown_ticks.extend(lb for lb in labels if lb.get_visible())
        texts = [t for t in ax.findobj(Text) if id(t) not in skip] + shown_ticks
        for t in texts:
            if t.get_visible() and str(t.get_text()).strip():
                out.append((f"{ax.get_title() or 'axes'}: '{t.get_text()}'", t.get_window_extent(renderer), ax))
        if legend is not None and legend.get_visible():
            out.append((f"{ax.get_title() or 'axes'}: legend", legend.get_window_extent(renderer), ax))
    for t in fig.texts:
        if t.get_visible() and str(t.get_text()).strip():
            out.append((f"figure: '{t.get_text()}'", t.get_window_extent(renderer), fig))
    for legend in fig.legends:
        out.append(("figure: legend", legend.get_window_extent(renderer), fig))
    return out


def text_overlaps(fig: Figure) -> list[str]:
    """Every pair of text elements (titles, axis and tick labels, point labels) and legends whose
    rendered bounding boxes intersect (a pixel of tolerance). Empty = readable."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    items = _texts(fig, canvas.get_renderer())
    bad = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (na, a, _), (nb, b, _) = items[i], items[j]
            if a.width <= 0 or b.width <= 0:
                continue
            if a.x0 + 1 < b.x1 and b.x0 + 1 < a.x1 and a.y0 + 1 < b.y1 and b.y0 + 1 < a.y1:
                bad.append(f"{na} overlaps {nb}")
    return bad
