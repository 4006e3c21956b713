"""Small matplotlib figures the notebooks show (they work headless under papermill)."""

from __future__ import annotations

import matplotlib.pyplot as plt


def loss_curve(log_history: list[dict], ax=None, title: str = "Training loss"):
    """Train (and eval, if logged) loss against step from ``trainer.state.log_history``."""

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if not train and not evals:
        raise ValueError("log_history has no 'loss' or 'eval_loss' entries: set logging_steps in TrainingArguments")
    if train:
        ax.plot(*zip(*train), label="train")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax.figure


def bar_compare(values: dict[str, float], ylabel: str, ax=None, title: str = "", ylim=(0, 1)):
    """One bar per model/setting with its value written on top."""

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    bars = ax.bar(list(values), list(values.values()), color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    return ax.figure


def sweep_curves(frame, x: str, y: str, by: str, ax=None, band: tuple[float, float] | None = None,
                 band_label: str = "", title: str = "", logx: bool = True):
    """``y`` against ``x`` (log scale), one line per value of ``by``; ``band`` shades a range of ``x``."""

    missing = [c for c in (x, y, by) if c not in frame.columns]
    if missing:
        raise ValueError(f"the sweep table has no column {missing}; it has {list(frame.columns)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for key, part in frame.sort_values(x).groupby(by, sort=False):
        ax.plot(part[x], part[y], marker="o", label=str(key))
    if band:
        ax.axvspan(*band, color="grey", alpha=0.15, label=band_label or None)
    ax.set(xscale="log" if logx else "linear", xlabel=x.replace("_", " "), ylabel=y.replace("_", " "), title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax.figure
