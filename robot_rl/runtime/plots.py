"""Learning-curve figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robot_rl.data.files import write_atomic  # noqa: E402


def plot_learning_curve(
    evals: list[dict], path: Path, title: str = "", curves: dict[str, list[dict]] | None = None
) -> None:
    """Eval success rate and mean return against env steps; `curves` overlays several runs (label -> evals)."""
    curves = curves or {"eval": evals}
    fig, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in curves.items():
        steps = [p["env_steps"] for p in points]
        ax_success.plot(steps, [p["success_rate"] for p in points], marker="o", ms=3, label=label)
        ax_return.plot(steps, [p["mean_return"] for p in points], marker="o", ms=3, label=label)
    ax_success.set(xlabel="env steps", ylabel="eval success rate", ylim=(-0.02, 1.02), title=title)
    ax_success.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax_return.set(xlabel="env steps", ylabel="eval mean return")
    for ax in (ax_success, ax_return):
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format=Path(path).suffix.lstrip(".") or "png", dpi=100)
    plt.close(fig)
    write_atomic(Path(path), image.getvalue())
