"""Robustness results for people: Markdown tables, robustness curves, adversarial examples."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from models.reporting.html import html_report
from models.reporting.plots import figure_png, pyplot, show_image
from models.robustness.config import FINE, RobustnessConfig, own_loss_key, robust_key
from models.tree.hierarchy import Hierarchy


def headline(metrics: dict[str, Any], names: list[str]) -> dict[str, float]:
    """Flat keys: clean and robust accuracy per level, graceful degradation, corruption means."""
    out: dict[str, float] = {}
    for name in names:
        out[f"clean_accuracy_{name}"] = metrics["clean"][f"accuracy_{name}"]
    for attack, per_eps in metrics["attacks"].items():
        for eps, scores in per_eps.items():
            for name in names:
                out[robust_key(name, attack, float(eps))] = scores[f"accuracy_{name}"]
                if name != FINE:
                    out[f"graceful_{name}_{attack}_eps{float(eps):g}"] = scores[f"graceful_{name}"]
    for r in metrics.get("level_attacks", []):
        out[own_loss_key(r["level"], r["attack"], r["eps"])] = r[f"accuracy_{r['level']}"]
    corr = metrics["corruptions"]
    if corr:
        for name in names:
            out[f"corruption_accuracy_{name}"] = float(
                np.mean([c["mean"][f"accuracy_{name}"] for c in corr.values()])
            )
        out["corruption_ece_fine"] = float(np.mean([c["mean"]["ece_fine"] for c in corr.values()]))
    return out


def _table_head(columns: list[str]) -> str:
    """The header and separator rows of a Markdown table."""
    return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"


def attack_table(metrics: dict[str, Any], names: list[str]) -> str:
    """Markdown: accuracy per level and graceful degradation, clean then each attack and eps."""
    coarse = [n for n in names if n != FINE]
    head = _table_head(
        [
            "attack",
            "eps",
            *(f"acc {n}" for n in names),
            *(f"{n} right when leaf wrong" for n in coarse),
        ]
    )

    def row(attack: str, eps: str, s: dict[str, float]) -> str:
        cells = [f"{s[f'accuracy_{n}']:.4f}" for n in names]
        cells += [f"{s[f'graceful_{n}']:.4f}" for n in coarse]
        return f"| {attack} | {eps} | " + " | ".join(cells) + " |\n"

    body = row("clean", "0", metrics["clean"])
    for attack, per_eps in metrics["attacks"].items():
        for eps, s in per_eps.items():
            body += row(attack, eps, s)
    for r in metrics.get("level_attacks", []):
        body += row(f"{r['attack']} on the {r['level']}'s own loss", f"{r['eps']:g}", r)
    return head + body


def corruption_table(metrics: dict[str, Any], names: list[str]) -> str:
    """Markdown: per corruption, mean accuracy per level and fine ECE over severities."""
    corr = metrics["corruptions"]
    sevs = list(next(iter(corr.values())))[:-1] if corr else []
    head = _table_head(
        [
            "corruption",
            *(f"mean acc {n}" for n in names),
            "mean ECE fine",
            *(f"fine @{s}" for s in sevs),
        ]
    )
    c0 = metrics["corruptions_clean"]
    body = (
        "| (clean) | "
        + " | ".join(f"{c0[f'accuracy_{n}']:.4f}" for n in names)
        + f" | {c0['ece_fine']:.4f} | "
        + " | ".join("" for _ in sevs)
        + " |\n"
    )
    for cname, per in corr.items():
        m = per["mean"]
        body += (
            f"| {cname} | "
            + " | ".join(f"{m[f'accuracy_{n}']:.4f}" for n in names)
            + f" | {m['ece_fine']:.4f} | "
            + " | ".join(f"{per[s]['accuracy_fine']:.4f}" for s in sevs)
            + " |\n"
        )
    return head + body


def robustness_curves_png(metrics: dict[str, Any], names: list[str]) -> bytes:
    """PNG: accuracy per level vs eps for each attack; fine accuracy vs severity per corruption."""
    plt = pyplot()
    attacks = metrics["attacks"]
    corr = metrics["corruptions"]
    panels = len(attacks) + (1 if corr else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    for ax, (attack, per_eps) in zip(axes[0], attacks.items(), strict=False):
        eps = [0.0] + [float(e) for e in per_eps]
        for name in names:
            acc = [metrics["clean"][f"accuracy_{name}"]]
            acc += [s[f"accuracy_{name}"] for s in per_eps.values()]
            ax.plot(eps, acc, marker="o", label=name)
        _accuracy_axes(
            ax,
            f"{attack.upper()} (L-inf, {metrics['attack_images']} test images)",
            "eps (pixels in [0, 1])",
        )
        ax.legend(fontsize=8)
    if corr:
        ax = axes[0, -1]
        clean = metrics["corruptions_clean"]["accuracy_fine"]
        for cname, per in corr.items():
            sevs = [0] + [int(s) for s in per if s != "mean"]
            acc = [clean] + [per[s]["accuracy_fine"] for s in per if s != "mean"]
            ax.plot(sevs, acc, marker=".", label=cname)
        _accuracy_axes(
            ax, f"Corruptions, fine level ({metrics['corruption_images']} test images)", "severity"
        )
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return figure_png(fig)


def _accuracy_axes(ax: Any, title: str, xlabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)


def adversarial_examples_png(
    images: np.ndarray,
    adversarial: np.ndarray,
    labels: np.ndarray,
    adv_log_probs: Tensor,
    tree: Hierarchy,
    what: str,
    seed: int,
    n: int = 8,
) -> bytes:
    """PNG: clean images (top) over their adversarial versions with the new prediction."""
    plt = pyplot()
    pred = adv_log_probs.argmax(1).cpu().numpy()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(n, len(images)), replace=False)
    fig, axes = plt.subplots(2, len(pick), figsize=(len(pick) * 1.2, 2.8), squeeze=False)
    for c, i in enumerate(pick):
        adv = (adversarial[i].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        show_image(axes[0, c], images[i], tree.leaves[labels[i]], fontsize=6)
        show_image(
            axes[1, c],
            adv,
            tree.leaves[pred[i]],
            fontsize=6,
            color="green" if pred[i] == labels[i] else "red",
        )
    fig.suptitle(f"Clean (top) and {what} (bottom, predicted leaf)", fontsize=9)
    fig.tight_layout(pad=0.3)
    return figure_png(fig, dpi=90)


PICTURE_HEADINGS = {
    "robustness_curves": "Robustness curves",
    "adversarial_examples": "Adversarial examples",
    "saliency_per_class": "Integrated Gradients, per class",
    "saliency_mistakes": "Integrated Gradients, misclassified images",
    "neighbours": "Nearest training neighbours in feature space",
}


def robustness_html(
    metrics: dict[str, Any],
    tables: dict[str, str],
    pictures: dict[str, bytes],
    dataset_name: str,
    config: RobustnessConfig,
) -> str:
    """The robustness report page: the gate, the tables, every picture, the settings."""
    gate = metrics["gate"]
    return html_report(
        f"hiergan robustness — {dataset_name} test split "
        f"({metrics['attack_images']} images attacked, {metrics['corruption_images']} corrupted)",
        [
            (
                "Gate",
                f"{gate['metric']} = {gate['value']:.4f}, minimum {gate['min_accuracy']:.4f}: "
                + ("passed" if gate["passed"] else "FAILED"),
            ),
            ("Attacks (accuracy per level; graceful degradation)", tables["attacks"]),
            ("Corruptions (mean over severities)", tables["corruptions"]),
            *[(PICTURE_HEADINGS.get(name, name), png) for name, png in pictures.items()],
            (
                "Settings",
                f"PGD: {config.pgd_steps} steps of {config.pgd_step_ratio:g} x eps, "
                f"random start: {config.pgd_random_init}; seed {config.seed}; "
                f"seconds: {metrics['seconds']}",
            ),
        ],
    )
