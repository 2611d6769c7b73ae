"""A line's last days as a small inline SVG chart, drawn on the server (no script, no CDN)."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

# (series, label, colour): failed counts undelivered sends too.
SERIES = (
    ("sent", "Sent", "#2563eb"),
    ("delivered", "Delivered", "#15803d"),
    ("failed", "Failed", "#b91c1c"),
    ("replies", "Replies", "#7c3aed"),
)
WIDTH, HEIGHT, PAD = 280, 64, 4


def activity_chart(days: list[dict]) -> SafeString:
    """Polylines of sent / delivered / failed (incl. undelivered) / replies per day."""
    values = {
        key: [d[key] + (d["undelivered"] if key == "failed" else 0) for d in days]
        for key, _label, _colour in SERIES
    }
    top = max([1, *(v for series in values.values() for v in series)])
    step = (WIDTH - 2 * PAD) / max(1, len(days) - 1)

    def point(i: int, value: int) -> str:
        x = PAD + i * step
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top
        return f"{x:.1f},{y:.1f}"

    first, last = days[0]["date"], days[-1]["date"]
    totals = ", ".join(f"{label} {sum(values[key])}" for key, label, _c in SERIES)
    title = f"{first:%b %-d} to {last:%b %-d}: {totals}"
    lines = [
        format_html(
            '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}">'
            "<title>{}</title></polyline>",
            colour,
            " ".join(point(i, v) for i, v in enumerate(values[key])),
            f"{label}: {', '.join(str(v) for v in values[key])}",
        )
        for key, label, colour in SERIES
    ]
    legend = "".join(
        format_html(
            '<span class="chart-key"><span class="chart-swatch" style="background:{}"></span>'
            "{} {}</span>",
            colour,
            label,
            sum(values[key]),
        )
        for key, label, colour in SERIES
    )
    svg = (
        f'<svg class="line-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#d0d5dd" stroke-width="1"/>' + "".join(lines) + "</svg>"
    )
    return mark_safe(f'{svg}<div class="chart-legend small">{legend}</div>')  # noqa: S308
