#!/usr/bin/env python3
"""Draws cache-aware routing's Pareto curve (perplexity cost against hit rate) from the JSON of
`cosmoe compare-routing --json` runs, one per lambda, beside the BlES-trained model's point.

usage: pareto.py OUT.svg BLES_PPL_CHANGE_PCT BLES_HIT_RATE KIND=VALUE=RUN.json...

KIND is lambda or margin (the bound's two forms, one line each).

Plain SVG, no plotting library: the figure is a dozen points.
"""
import json
import sys


def main():
    out, bles_cost, bles_hit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    series = {"lambda": [], "margin": []}
    for arg in sys.argv[4:]:
        kind, value, path = arg.split("=", 2)
        d = json.load(open(path))
        series[kind].append((float(value), 100 * d["other"]["hit_rate"], d["ppl_change_pct"],
                             100 * d["exact"]["hit_rate"]))
    runs = sorted(series["lambda"] + series["margin"])
    exact_hit = sorted(r[3] for r in runs)[len(runs) // 2]
    W, H, L, R, T, B = 720, 460, 70, 30, 40, 60
    xs = [exact_hit] + [r[1] for r in runs] + [100 * bles_hit]
    ys = [0.0] + [r[2] for r in runs] + [bles_cost]
    x0, x1 = 5 * int(min(xs) / 5), 5 * int(max(xs) / 5 + 1)
    y0, y1 = min(-2, 5 * int(min(ys) / 5 - 1)), 5 * int(max(ys) / 5 + 1)
    X = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: H - B - (v - y0) / (y1 - y0) * (H - T - B)
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">Cache-aware routing on the trained MoE: '
         f'perplexity cost against hit rate</text>']
    for v in range(x0, x1 + 1, 5):
        e.append(f'<line x1="{X(v)}" y1="{T}" x2="{X(v)}" y2="{H - B}" stroke="#e4e4e4"/>')
        e.append(f'<text x="{X(v)}" y="{H - B + 16}" text-anchor="middle">{v}</text>')
    for v in range(y0, y1 + 1, 2 if y1 - y0 <= 20 else 5):
        e.append(f'<line x1="{L}" y1="{Y(v)}" x2="{W - R}" y2="{Y(v)}" stroke="#e4e4e4"/>')
        e.append(f'<text x="{L - 6}" y="{Y(v) + 4}" text-anchor="end">{v:+d}</text>')
    e.append(f'<line x1="{L}" y1="{Y(2)}" x2="{W - R}" y2="{Y(2)}" stroke="#d62728" stroke-dasharray="5,4"/>')
    e.append(f'<text x="{W - R - 4}" y="{Y(2) - 5}" text-anchor="end" fill="#d62728">the goal: under +2 %</text>')
    e.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">decode hit rate (%), room for 2 experts '
             f'a layer (the paper\'s rule)</text>')
    e.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">perplexity change '
             f'against exact routing (%)</text>')
    styles = {"lambda": ("#1f77b4", "&#955; ", "end", -6, -8), "margin": ("#2ca02c", "margin ", "start", 6, 16)}
    for kind, pts_ in series.items():
        if not pts_:
            continue
        color, name, anchor, dx, dy = styles[kind]
        pts = [(exact_hit, 0.0)] + [(r[1], r[2]) for r in sorted(pts_)]
        e.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                 + " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in pts) + '"/>')
        for v, hit, cost, _ in pts_:
            e.append(f'<circle cx="{X(hit)}" cy="{Y(cost)}" r="4" fill="{color}"/>')
            e.append(f'<text x="{X(hit) + dx}" y="{Y(cost) + dy}" text-anchor="{anchor}" fill="{color}">'
                     f'{name}{v:g}</text>')
    e.append(f'<circle cx="{X(exact_hit)}" cy="{Y(0)}" r="5" fill="black"/>')
    e.append(f'<text x="{X(exact_hit) + 8}" y="{Y(0) + 16}">exact routing</text>')
    bx, by = X(100 * bles_hit), Y(bles_cost)
    e.append(f'<rect x="{bx - 5}" y="{by - 5}" width="10" height="10" fill="#ff7f0e"/>')
    e.append(f'<text x="{bx - 9}" y="{by + 4}" text-anchor="end" fill="#ff7f0e">BlES-trained model (retrained)</text>')
    e.append("</svg>")
    open(out, "w").write("\n".join(e) + "\n")


if __name__ == "__main__":
    main()
