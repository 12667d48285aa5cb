"""PNG figures of training runs and learned maps, written atomically into a run folder.

Everything here draws on standalone :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas, so no pyplot state is touched and no display is needed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from otmap.errors import InputError
from otmap.utils.files import atomic_write

__all__ = [
    "image_grid",
    "plot_image_grid",
    "plot_metric_curves",
    "plot_stochastic_2d",
    "plot_sweep_grid",
    "plot_tradeoff",
    "plot_training_curves",
    "plot_transport_1d",
    "plot_transport_2d",
    "run_title",
    "warning_text",
]

SOURCE_COLOR = "#1f77b4"
TARGET_COLOR = "#ff7f0e"
PUSH_COLOR = "#2ca02c"
MAX_PANELS = 9
DPI = 110


# --------------------------------------------------------------------------- helpers


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` as a PNG at ``path`` (atomically) and free the figure."""
    FigureCanvasAgg(fig)
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    finally:
        fig.clear()


def _as_array(a: Any, name: str) -> np.ndarray:
    """Convert a tensor or array-like to a float64 numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().double().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be a numeric tensor or array, got {type(a).__name__}"
        ) from exc


def _points(a: Any, name: str, dim: int) -> np.ndarray:
    """Return ``a`` as an ``[n, dim]`` array with n >= 1, or raise a clear InputError."""
    arr = _as_array(a, name)
    if dim == 1 and arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{name} must have shape [n, {dim}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty; pass at least one sample")
    return arr


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``k`` of ``n`` items, chosen without replacement."""
    if n <= k:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def _finite(a: np.ndarray) -> np.ndarray:
    """Rows of ``a`` whose coordinates are all finite."""
    return a[np.isfinite(a).all(axis=1)]


Limits = tuple[tuple[float, float], ...]


def _limits(exact: Sequence[np.ndarray], robust: Sequence[np.ndarray], pad: float = 0.06) -> Limits:
    """Per-coordinate axis limits: full extent of ``exact``, 1st-99th percentile of ``robust``."""
    lows, highs = [], []
    for arr in exact:
        arr = _finite(arr)
        if len(arr):
            lows.append(arr.min(axis=0))
            highs.append(arr.max(axis=0))
    for arr in robust:
        arr = _finite(arr)
        if len(arr):
            lows.append(np.percentile(arr, 1, axis=0))
            highs.append(np.percentile(arr, 99, axis=0))
    if not lows:
        return tuple((-1.0, 1.0) for _ in range(exact[0].shape[1]))
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    span = np.maximum(hi - lo, 1e-6 * np.maximum(1.0, np.abs(hi)))
    lo, hi = lo - pad * span, hi + pad * span
    return tuple((float(a), float(b)) for a, b in zip(lo, hi, strict=True))


def _marker_size(n: int) -> float:
    """Scatter marker area that keeps both small and large clouds readable."""
    return float(np.clip(4000.0 / max(n, 1), 2.0, 14.0))


def _style_2d(ax: Axes, lims: Limits, title: str) -> None:
    """Apply shared limits, equal aspect and a light grid to a 2-D panel."""
    ax.set_xlim(*lims[0])
    ax.set_ylim(*lims[1])
    ax.set_aspect("equal", adjustable="box")
    ax.grid(alpha=0.25, linewidth=0.6)
    ax.set_title(title, fontsize=11)


def _scatter(ax: Axes, pts: np.ndarray, color: str, label: str | None, alpha: float = 0.5) -> None:
    """Scatter an ``[n, 2]`` cloud with a size suited to its number of points."""
    ax.scatter(
        pts[:, 0],
        pts[:, 1],
        s=_marker_size(len(pts)),
        c=color,
        alpha=alpha,
        linewidths=0,
        label=label,
        rasterized=True,
    )


def _legend(ax: Axes) -> None:
    """Legend with opaque, enlarged markers regardless of the scatter's size and alpha."""
    leg = ax.legend(loc="best", fontsize=9, framealpha=0.85)
    for handle in leg.legend_handles:
        handle.set_alpha(1.0)
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([30.0])


def _new_figure(ncols: int, title: str | None, height: float) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with one row of ``ncols`` panels, each 5 inches wide."""
    fig = Figure(figsize=(5.0 * ncols, height + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    if title:
        fig.suptitle(title, fontsize=13)
    return fig, axes


def _panel_height(lims: Limits) -> float:
    """Figure height that fits equal-aspect 5-inch-wide panels without wasted margins."""
    ratio = (lims[1][1] - lims[1][0]) / (lims[0][1] - lims[0][0])
    return float(np.clip(4.4 * ratio, 2.2, 6.0)) + 0.7


# --------------------------------------------------------------------------- training curves


def _is_number(v: Any) -> bool:
    """True for real numbers (numpy scalars included), False for bools, None and strings."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _collect_series(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-metric (steps, values) of the finite numeric entries, in first-seen key order."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step")
        x = float(step) if _is_number(step) else float(i)
        for key, value in row.items():
            if key == "step" or not _is_number(value) or not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
    out = {}
    for key, (xs, ys) in series.items():
        order = np.argsort(np.asarray(xs), kind="stable")
        out[key] = (np.asarray(xs)[order], np.asarray(ys)[order])
    return out


def _ema(v: np.ndarray) -> np.ndarray:
    """Bias-corrected exponential moving average with a span of ~1/30 of the series."""
    alpha = 2.0 / (max(1.0, len(v) / 30.0) + 1.0)
    out = np.empty_like(v)
    acc, norm = 0.0, 0.0
    for i, value in enumerate(v):
        acc = (1.0 - alpha) * acc + alpha * value
        norm = (1.0 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def _robust_range(t: np.ndarray) -> tuple[float, float]:
    """Data range ignoring only far outliers (beyond the 1st-99th percentile by > 25%)."""
    p1, p99 = np.percentile(t, [1, 99])
    reach = 0.25 * (p99 - p1)
    kept = t[(t >= p1 - reach) & (t <= p99 + reach)]
    return float(kept.min()), float(kept.max())


def _plot_metric(ax: Axes, key: str, xs: np.ndarray, ys: np.ndarray) -> None:
    """One metric panel: raw (+ smoothed when noisy), log y when it spans > 2 decades."""
    p1, p99 = np.percentile(ys, [1, 99])
    log = bool(ys.min() > 0 and p99 / p1 > 100.0)
    t = np.log10(ys) if log else ys
    lo, hi = _robust_range(t)
    span = hi - lo
    noisy = len(ys) >= 15 and np.median(np.abs(np.diff(t))) > 0.03 * span
    if noisy:
        ax.plot(xs, ys, color=SOURCE_COLOR, alpha=0.25, linewidth=0.8)
        smooth = _ema(t)
        ax.plot(xs, 10.0**smooth if log else smooth, color=SOURCE_COLOR, linewidth=1.6)
    else:
        marker = "o" if len(ys) <= 40 else None
        ax.plot(xs, ys, color=SOURCE_COLOR, linewidth=1.4, marker=marker, markersize=3)
    pad = 0.08 * span if span > 0 else (0.1 * abs(hi) or 1.0)
    y0, y1 = lo - pad, hi + pad
    if log:
        ax.set_yscale("log")
        y0, y1 = 10.0**y0, 10.0**y1
    ax.set_ylim(y0, y1)
    off = int(np.sum((t < lo) | (t > hi)))
    note = f"  ({off} off-scale)" if off else ""
    ax.set_title(f"{key}   last = {ys[-1]:.4g}{note}", fontsize=10)
    ax.grid(alpha=0.3, linewidth=0.6)


#: metrics shown first (held-out quality, then the players' objectives); wall time comes last
_FIRST = ("l2_uvp", "cos", "psnr", "ssim", "fid", "target_class_share", "fidelity", "energy",
          "diversity", "transport_cost", "cost", "loss_map", "loss_potential", "gamma")
_LAST = ("time",)


#: the monitors' 0/1 flags (otmap.train.evaluation), set from the evaluation where they fired on:
#: marked on every curve and named in the title instead of drawn as curves of their own
FLAGS = {"diverging": ("diverging", "#d62728"),
         "oscillating": ("oscillating (fake solutions?)", "#9467bd")}


def _flag_steps(rows: list[dict]) -> dict[str, float]:
    """The first step at which each flag of :data:`FLAGS` is set in ``rows``."""
    fired: dict[str, float] = {}
    for row in rows:
        for key in FLAGS:
            if key not in fired and _is_number(row.get(key)) and row[key] > 0:
                fired[key] = float(row.get("step", 0))
    return fired


def warning_text(rows: list[dict]) -> str:
    """``"warning: diverging since step 700"`` (one part per flag set in ``rows``), or ``""``."""
    fired = _flag_steps(rows)
    parts = [f"{FLAGS[key][0]} since step {step:g}" for key, step in fired.items()]
    return "warning: " + "; ".join(parts) if parts else ""


def run_title(name: str, rows: list[dict]) -> str:
    """``name``, with :func:`warning_text` of ``rows`` on a second line when a flag is set."""
    warning = warning_text(rows)
    return f"{name}\n{warning}" if warning else name


def _mark_flags(ax: Axes, fired: dict[str, float], end: float, legend: bool) -> None:
    """A line at each flag's first step and a light band from there to ``end``."""
    for key, step in fired.items():
        label, color = FLAGS[key]
        ax.axvline(step, color=color, linestyle="--", linewidth=1.2, label=label)
        ax.axvspan(step, max(end, step), color=color, alpha=0.07, linewidth=0)
    if legend and fired:
        ax.legend(fontsize=8, loc="best")


def _panel_rank(key: str) -> tuple[int, int]:
    if key in _FIRST:
        return (0, _FIRST.index(key))
    return (2, 0) if key in _LAST else (1, 0)


def plot_training_curves(rows: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Grid of per-metric curves from parsed ``metrics.jsonl`` rows; returns the PNG path.

    Non-numeric, missing, None and non-finite values are skipped; at most nine metrics are
    drawn, held-out metrics first and wall time last (the rest are named in a footnote).
    The monitors' flags (``diverging``, ``oscillating``) are marked from the step they fired
    on every panel and named in the title (in red). Empty input gives a "no metrics yet"
    figure.
    """
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError("rows must be a list of dicts (parsed metrics.jsonl lines)")
    series = {k: v for k, v in _collect_series(rows).items() if k not in FLAGS}
    if not series:
        fig = Figure(figsize=(6.0, 3.5), layout="constrained")
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no metrics yet", ha="center", va="center", fontsize=16, color="0.4")
        ax.set_axis_off()
        if title:
            fig.suptitle(title, fontsize=13)
        return _save(fig, path)

    ordered = sorted(series, key=_panel_rank)
    keys, hidden = ordered[:MAX_PANELS], ordered[MAX_PANELS:]
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.1 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    fired = _flag_steps(rows)
    end = max(float(xs[-1]) for xs, _ in series.values())
    for i, (ax, key) in enumerate(zip(axes, keys, strict=False)):
        _plot_metric(ax, key, *series[key])
        _mark_flags(ax, fired, end, legend=i == 0)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for col in range(ncols):
        bottom = max(i for i in range(col, len(keys), ncols))
        axes[bottom].tick_params(labelbottom=True)
        axes[bottom].set_xlabel("step")
    warning = warning_text(rows)
    if title or warning:
        fig.suptitle(run_title(title or "", rows).strip(), fontsize=13,
                     color="#b00000" if warning else "black")
    if hidden:
        fig.text(0.01, 0.005, "not shown: " + ", ".join(hidden), fontsize=8, color="0.4")
    return _save(fig, path)


# --------------------------------------------------------------------------- transport maps


def plot_transport_2d(
    x: Any,
    tx: Any,
    y: Any,
    path: str | Path,
    title: str | None = None,
    max_arrows: int = 300,
    max_points: int = 3000,
) -> Path:
    """Source/target, pushforward T#x vs target, and arrows x -> T(x); returns the PNG path.

    ``x`` and ``tx`` are ``[n, 2]`` (row i of ``tx`` is T of row i of ``x``), ``y`` is
    ``[m, 2]``; tensors or arrays. All three panels share limits and equal aspect.
    """
    x, tx, y = _points(x, "x", 2), _points(tx, "tx", 2), _points(y, "y", 2)
    if len(tx) != len(x):
        raise InputError(f"tx must have one row per row of x: got {len(tx)} and {len(x)}")
    if max_arrows < 1 or max_points < 1:
        raise InputError("max_arrows and max_points must be positive")
    rng = np.random.default_rng(0)
    ix = _subsample(len(x), max_points, rng)
    iy = _subsample(len(y), max_points, rng)
    ia = _subsample(len(x), max_arrows, rng)
    xs, txs, ys = x[ix], tx[ix], y[iy]
    lims = _limits([x, y], [tx])

    fig, (a, b, c) = _new_figure(3, title, _panel_height(lims))
    _scatter(a, ys, TARGET_COLOR, "target y")
    _scatter(a, xs, SOURCE_COLOR, "source x")
    _style_2d(a, lims, "source and target")
    _legend(a)

    _scatter(b, ys, TARGET_COLOR, "target y")
    _scatter(b, txs, PUSH_COLOR, "T(x)")
    _style_2d(b, lims, "pushforward T#x vs target")
    _legend(b)

    _scatter(c, ys, TARGET_COLOR, None, alpha=0.12)
    _scatter(c, x[ia], SOURCE_COLOR, None, alpha=0.8)
    d = tx[ia] - x[ia]
    c.quiver(
        x[ia, 0],
        x[ia, 1],
        d[:, 0],
        d[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1,
        color="0.15",
        alpha=0.45,
        width=0.0025,
        headwidth=4,
        headlength=5,
        headaxislength=4.5,
    )
    _style_2d(c, lims, f"map x \u2192 T(x)  ({len(ia)} arrows)")
    return _save(fig, path)


def plot_transport_1d(x: Any, tx: Any, y: Any, path: str | Path, title: str | None = None) -> Path:
    """Histograms of source/target and pushforward/target, and the map x -> T(x).

    ``x`` and ``tx`` are ``[n, 1]`` (or ``[n]``), ``y`` is ``[m, 1]``. The map panel also
    shows the identity and the monotone (quantile) rearrangement of x onto y, which is the
    exact OT map in 1-D for convex costs.
    """
    x, tx, y = _points(x, "x", 1), _points(tx, "tx", 1), _points(y, "y", 1)
    if len(tx) != len(x):
        raise InputError(f"tx must have one row per row of x: got {len(tx)} and {len(x)}")
    ((lo, hi),) = _limits([x, y], [tx])
    x, tx, y = x[:, 0], tx[:, 0], y[:, 0]
    n_bins = int(np.clip(np.sqrt(max(len(x), len(y))), 10, 80))
    bins = np.linspace(lo, hi, n_bins + 1)

    fig, (a, b, c) = _new_figure(3, title, 4.0)
    for ax, (data, color, label), panel in (
        (a, (x, SOURCE_COLOR, "source x"), "source and target"),
        (b, (tx, PUSH_COLOR, "T(x)"), "pushforward T#x vs target"),
    ):
        finite_y, finite_d = y[np.isfinite(y)], data[np.isfinite(data)]
        ax.hist(finite_y, bins=bins, density=True, color=TARGET_COLOR, alpha=0.35, label="target y")
        ax.hist(
            finite_d,
            bins=bins,
            density=True,
            color=color,
            histtype="step",
            linewidth=1.8,
            label=label,
        )
        ax.set_xlim(lo, hi)
        ax.set_title(panel, fontsize=11)
        ax.set_ylabel("density")
        ax.grid(alpha=0.25, linewidth=0.6)
        ax.legend(fontsize=9)

    order = np.argsort(x, kind="stable")
    xo, txo = x[order], tx[order]
    finite_y = y[np.isfinite(y)]
    c.plot([lo, hi], [lo, hi], color="0.6", linestyle=":", linewidth=1.0, label="identity")
    if len(finite_y):
        quantiles = (np.arange(len(xo)) + 0.5) / len(xo)
        c.plot(
            xo,
            np.quantile(finite_y, quantiles),
            color=TARGET_COLOR,
            linestyle="--",
            linewidth=1.4,
            label="monotone OT map",
        )
    c.scatter(
        xo,
        txo,
        s=_marker_size(len(xo)),
        c=PUSH_COLOR,
        alpha=0.6,
        linewidths=0,
        label="T(x)",
        rasterized=True,
    )
    c.set_xlim(lo, hi)
    c.set_ylim(lo, hi)
    c.set_xlabel("x")
    c.set_ylabel("T(x)")
    c.set_title("map x \u2192 T(x)", fontsize=11)
    c.grid(alpha=0.25, linewidth=0.6)
    _legend(c)
    return _save(fig, path)


def _spread_indices(pts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` points spread over the cloud (greedy farthest-point sampling)."""
    candidates = _subsample(len(pts), 2000, rng)
    candidates = candidates[np.isfinite(pts[candidates]).all(axis=1)]
    if len(candidates) <= k:
        return candidates
    cand = pts[candidates]
    centre = np.median(cand, axis=0)
    chosen = [int(np.argmin(((cand - centre) ** 2).sum(axis=1)))]
    dist = ((cand - cand[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((cand - cand[nxt]) ** 2).sum(axis=1))
    return candidates[chosen]


def plot_stochastic_2d(
    x: Any,
    txz: Any,
    y: Any,
    path: str | Path,
    title: str | None = None,
    n_inputs: int = 8,
    max_points: int = 3000,
) -> Path:
    """Source/target, one-to-many samples T(x, z_j) of a few inputs, and the pushforward.

    ``x`` is ``[n, 2]``, ``txz`` is ``[n, k, 2]`` (k samples per input), ``y`` is ``[m, 2]``.
    The middle panel draws ``n_inputs`` well-spread inputs, each with its k outputs in one
    colour and thin lines from the input to every output.
    """
    x, y = _points(x, "x", 2), _points(y, "y", 2)
    txz = _as_array(txz, "txz")
    if txz.ndim != 3 or txz.shape[2] != 2 or txz.shape[1] == 0:
        raise InputError(f"txz must have shape [n, k, 2] with k >= 1, got {list(txz.shape)}")
    if len(txz) != len(x):
        raise InputError(f"txz must have one row per row of x: got {len(txz)} and {len(x)}")
    if n_inputs < 1 or max_points < 1:
        raise InputError("n_inputs and max_points must be positive")
    rng = np.random.default_rng(0)
    flat = txz.reshape(-1, 2)
    xs = x[_subsample(len(x), max_points, rng)]
    ys = y[_subsample(len(y), max_points, rng)]
    flats = flat[_subsample(len(flat), max_points, rng)]
    chosen = _spread_indices(x, n_inputs, rng)
    lims = _limits([x, y], [flat])

    fig, (a, b, c) = _new_figure(3, title, _panel_height(lims))
    _scatter(a, ys, TARGET_COLOR, "target y")
    _scatter(a, xs, SOURCE_COLOR, "source x")
    _style_2d(a, lims, "source and target")
    _legend(a)

    _scatter(b, ys, TARGET_COLOR, None, alpha=0.1)
    _scatter(b, xs, SOURCE_COLOR, None, alpha=0.1)
    cmap = colormaps["Dark2"] if len(chosen) <= 8 else colormaps["turbo"].resampled(len(chosen))
    for j, i in enumerate(chosen):
        color = cmap(j)
        outs = txz[i]
        segments = np.stack([np.broadcast_to(x[i], outs.shape), outs], axis=1)
        b.add_collection(LineCollection(segments, colors=[color], linewidths=0.6, alpha=0.35))
        b.scatter(outs[:, 0], outs[:, 1], s=10, color=color, alpha=0.8, linewidths=0)
        b.scatter(
            x[i, 0],
            x[i, 1],
            s=70,
            color=color,
            edgecolors="black",
            linewidths=1.0,
            marker="o",
            zorder=3,
        )
    k = txz.shape[1]
    _style_2d(b, lims, f"one-to-many: {len(chosen)} inputs \u00d7 {k} samples")

    _scatter(c, ys, TARGET_COLOR, "target y")
    _scatter(c, flats, PUSH_COLOR, "T(x, z)")
    _style_2d(c, lims, "pushforward T#(x, z) vs target")
    _legend(c)
    return _save(fig, path)


def plot_sweep_grid(cells: dict[tuple[str, str], tuple[Any, Any, Any]], path: str | Path,
                    title: str | None = None, n_inputs: int = 6) -> Path:
    """A grid of 2-D stochastic maps: ``cells[(row, col)] = (x [n, 2], txz [n, k, 2], y)``.

    Each panel shows the target (faint), the pushforward, and ``n_inputs`` inputs with lines to
    their samples: the seeds' comparison grid (rows: costs, columns: gamma).
    """
    rows = list(dict.fromkeys(r for r, _ in cells))
    cols = list(dict.fromkeys(c for _, c in cells))
    fig = Figure(figsize=(2.6 * len(cols), 2.6 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    rng = np.random.default_rng(0)
    for (r, c), (x, txz, y) in cells.items():
        ax = axes[rows.index(r)][cols.index(c)]
        x, y, txz = _points(x, "x", 2), _points(y, "y", 2), _as_array(txz, "txz")
        flat = txz.reshape(-1, 2)
        _scatter(ax, y[_subsample(len(y), 1500, rng)], TARGET_COLOR, None, alpha=0.15)
        _scatter(ax, flat[_subsample(len(flat), 1500, rng)], PUSH_COLOR, None, alpha=0.5)
        for j, i in enumerate(_spread_indices(x, n_inputs, rng)):
            segments = np.stack([np.broadcast_to(x[i], txz[i].shape), txz[i]], axis=1)
            ax.add_collection(LineCollection(segments, colors=[colormaps["Dark2"](j)],
                                             linewidths=0.6, alpha=0.6))
            ax.scatter(*x[i], s=25, color=colormaps["Dark2"](j), edgecolors="black", zorder=3)
        _style_2d(ax, _limits([x, y], [flat]), f"{r}, {c}")
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_tradeoff(points: list[dict], path: str | Path, title: str | None = None) -> Path:
    """The similarity/diversity trade-off of a gamma sweep.

    ``points``: dicts with ``"series"`` (e.g. the cost), ``"gamma"``, ``"transport_cost"``,
    ``"diversity"`` and ``"fidelity"``. Left: diversity against transport cost, one line per
    series, annotated with gamma; right: fidelity ratio against gamma (log scale).
    """
    fig, (a, b) = _new_figure(2, title, 3.8)
    for n, name in enumerate(dict.fromkeys(p["series"] for p in points)):
        pts = sorted((p for p in points if p["series"] == name), key=lambda p: p["gamma"])
        color = colormaps["tab10"](n)
        a.plot([p["transport_cost"] for p in pts], [p["diversity"] for p in pts], "o-",
               color=color, label=name)
        for p in pts:
            a.annotate(f"\u03b3={p['gamma']:g}", (p["transport_cost"], p["diversity"]),
                       fontsize=7, xytext=(3, 3), textcoords="offset points")
        b.plot([p["gamma"] for p in pts], [p["fidelity"] for p in pts], "o-", color=color,
               label=name)
    a.set(xlabel="transport cost  E 1/2|x - T(x, z)|^2  (similarity \u2190)",
          ylabel="diversity  E_x Var_z T(x, z)", title="similarity vs diversity")
    b.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    b.set(xlabel="\u03b3", ylabel="fidelity ratio (1 = target vs target)", yscale="log",
          title="pushforward fidelity")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metric_curves(curves: dict[str, list[dict]], metric: str, path: str | Path,
                       title: str | None = None) -> Path:
    """One metric over training for several runs: ``curves[name] = metrics.jsonl rows``."""
    fig, (ax,) = _new_figure(1, title, 3.6)
    for n, (name, rows) in enumerate(curves.items()):
        pts = [(r["step"], r[metric]) for r in rows if _is_number(r.get(metric))]
        if pts:
            steps, values = zip(*pts)
            ax.plot(steps, values, "o-", markersize=3, color=colormaps["tab10"](n), label=name)
    ax.set(xlabel="step", ylabel=metric, yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def image_grid(images: Any, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """``[n, c, h, w]`` images in ``[-1, 1]`` -> one ``[H, W, 3]`` array in ``[0, 1]``."""
    x = _as_array(images, "images")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"images must be [n, 1 or 3, h, w], got {list(x.shape)}")
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad, 3))
    x = np.clip((x + 1) / 2, 0, 1).transpose(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + col * (w + pad): pad + col * (w + pad) + w] = x[i] if c == 3 else x[i][..., :1]
    return grid


def plot_image_grid(images: Any, path: str | Path, title: str | None = None,
                    nrow: int | None = None) -> Path:
    """A PNG grid of ``[n, c, h, w]`` images in ``[-1, 1]``."""
    grid = image_grid(images, nrow)
    scale = max(1.0, 512 / max(grid.shape[:2]))
    width = max(grid.shape[1] * scale / DPI, 4.0)  # room for the title
    fig = Figure(figsize=(width, grid.shape[0] * scale / DPI + 0.3), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
