"""Server-rendered SVG trend charts: a test's values over time against its reference band.

Readable without colour: the band is labelled in text, out-of-range points are triangles (not just
red), and the chart carries a text alternative; the history table beside it has every value.
"""
from __future__ import annotations

from html import escape

W, H = 320, 140
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 14, 26


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def trend_svg(name: str, points: list[tuple[str, float | None]], low: float | None, high: float | None,
              unit: str) -> str:
    """An inline <svg> for (date, value) points given newest first; '' when fewer than 2 values."""
    pts = [(d, float(v)) for d, v in reversed(points) if v is not None and d]
    if len(pts) < 2:
        return ""
    values = [v for _, v in pts] + [b for b in (low, high) if b is not None]
    vmin, vmax = min(values), max(values)
    if vmax == vmin:
        vmin, vmax = vmin - 1, vmax + 1
    span = vmax - vmin
    vmin, vmax = vmin - span * 0.08, vmax + span * 0.08
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + plot_w * i / (len(pts) - 1)

    def y(v: float) -> float:
        return PAD_T + plot_h * (vmax - v) / (vmax - vmin)

    first, last = pts[0][0][:10], pts[-1][0][:10]
    band_text = ""
    parts: list[str] = []
    if low is not None or high is not None:
        top = y(high) if high is not None else PAD_T
        bottom = y(low) if low is not None else PAD_T + plot_h
        band_text = f"reference range {_fmt(low) if low is not None else ''}–{_fmt(high) if high is not None else ''}"
        parts.append(f'<rect class="band" x="{PAD_L}" y="{top:.1f}" width="{plot_w}" height="{max(bottom - top, 1):.1f}"/>')
        parts.append(f'<text class="band-label" x="{W - PAD_R - 2}" y="{top + 11:.1f}" text-anchor="end">'
                     f'{escape(band_text.capitalize())}</text>')
    parts.append(f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{W - PAD_R}" y2="{PAD_T + plot_h}"/>')
    parts.append(f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + plot_h}"/>')
    parts.append(f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 4}" text-anchor="end">{_fmt(vmax)}</text>')
    parts.append(f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end">{_fmt(vmin)}</text>')
    parts.append(f'<text class="tick" x="{PAD_L}" y="{H - 8}">{escape(first)}</text>')
    parts.append(f'<text class="tick" x="{W - PAD_R}" y="{H - 8}" text-anchor="end">{escape(last)}</text>')
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(pts))
    parts.append(f'<polyline class="trend" points="{line}"/>')
    for i, (d, v) in enumerate(pts):
        out = (high is not None and v > high) or (low is not None and v < low)
        cx, cy = x(i), y(v)
        label = f"{escape(d[:10])}: {_fmt(v)} {escape(unit)}{' (out of range)' if out else ''}"
        if out:
            parts.append(f'<path class="pt out" d="M{cx:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 4:.1f} '
                         f'L{cx - 5:.1f},{cy + 4:.1f} Z"><title>{label}</title></path>')
        else:
            parts.append(f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="3.5"><title>{label}</title></circle>')
    latest = pts[-1][1]
    summary = (f"Trend of {name}: {len(pts)} results from {first} to {last}, latest {_fmt(latest)} {unit}"
               + (f", {band_text}" if band_text else "") + ". Triangles mark results outside the range.")
    return (f'<svg class="trend-chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(summary)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(summary)}</title>' + "".join(parts) + "</svg>")
