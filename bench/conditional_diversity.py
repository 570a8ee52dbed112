"""Does the tree-conditioned generator use its noise? A plain conditional GAN, two generators.

The triple game's G drew one image per leaf (``bench/results/label_efficiency.md``: diversity
0.05). This bench takes the game out of the question: G and the projection D train as a plain
conditional GAN on the train split with its true labels (hinge loss, the triple config's
networks and optimiser), once with the label embedding fed to G's first layer beside ``z``
(``embed_input``, the earlier design) and once with ``z`` alone at the input and the leaf only in
the conditional batch norms. Every ``--every`` steps: G's diversity
(:func:`models.triple.pictures.sample_diversity`: 1 = as varied as the real images of a leaf).

    python bench/conditional_diversity.py [--quick] [--steps 800]

Writes ``bench/results/conditional_diversity.{md,json}`` (``--quick``: a temporary folder); the
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.label_efficiency import load_params  # noqa: E402
from bench.label_efficiency_arms import StudyParams  # noqa: E402
from bench.machine import machine  # noqa: E402
from models.data.dataset import LabelledImages  # noqa: E402
from models.data.ingest import build_dataset  # noqa: E402
from models.gan.conditional import build_conditional_gan  # noqa: E402
from models.triple import losses  # noqa: E402
from models.triple.pictures import generate, leaf_spread, sample_diversity  # noqa: E402


def train(
    data: LabelledImages, params: StudyParams, embed_input: bool, steps: int, every: int, seed: int
) -> list[list[float]]:
    """A plain conditional GAN; ``[step, diversity]`` every ``every`` steps."""
    torch.manual_seed(seed)
    train_x, train_y = data.split("train")
    game = params.triple.for_data(data.image_shape, data.hierarchy.num_leaves)
    embed_dim = game.triple.embed_dim if game.triple else 128
    g, d = build_conditional_gan(
        game.architecture, data.hierarchy, embed_dim, True, seed, embed_input
    )
    opt_g = torch.optim.Adam(g.parameters(), game.lr_g, game.betas)
    opt_d = torch.optim.Adam(d.parameters(), game.lr_d, game.betas)
    images = torch.from_numpy(train_x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    labels = torch.from_numpy(train_y.astype(np.int64))
    pair, n_leaves = losses.PairLoss("hinge"), data.hierarchy.num_leaves
    probe = np.repeat(np.arange(n_leaves), 50)
    real_spread = leaf_spread(train_x, train_y, n_leaves)
    history = []
    for step in range(1, steps + 1):
        i = torch.randint(len(images), (game.batch_size,))
        z = torch.randn(game.batch_size, game.architecture.latent_dim)
        y_g = torch.randint(n_leaves, (game.batch_size,))
        fake = g(z, y_g)
        loss_d = pair.real(d(images[i], labels[i])) + pair.fake(d(fake.detach(), y_g)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = pair.gen(d(fake, y_g)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % every == 0 or step == steps:
            samples = generate(g, probe, seed + 7)
            history.append([step, round(sample_diversity(samples, probe, real_spread), 3)])
    return history


def main() -> None:
    """Both generators, one after the other; the table and the JSON headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/label_efficiency_cpu.yaml")
    parser.add_argument("--quick", action="store_true", help="small data and steps, same path")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = load_params(args.config, args.quick, "cpu")
    steps, every = (20, 10) if args.quick else (args.steps, args.every)
    data = build_dataset(params.dataset)
    rows = []
    for embed_input in (True, False):
        started = time.perf_counter()
        history = train(data, params, embed_input, steps, every, args.seed)
        seconds = round(time.perf_counter() - started, 1)
        rows.append({"embed_input": embed_input, "diversity": history, "seconds": seconds})
    out = Path(tempfile.mkdtemp() if args.quick else "bench/results")
    doc = {
        "machine": machine(),
        "command": "python bench/conditional_diversity.py " + " ".join(sys.argv[1:]),
        "steps": steps,
        "rows": rows,
    }
    (out / "conditional_diversity.json").write_text(json.dumps(doc, indent=1))
    lines = [
        "# Does the tree-conditioned generator use its noise? (a plain conditional GAN)\n",
        f"Machine: {doc['machine']}. Command: `{doc['command']}`. G and the projection D of the "
        "triple config, hinge loss, true labels of the train split, no classifier. Diversity: "
        "per leaf, the pixel standard deviation across G's samples over that across the leaf's "
        "real images (1 = as varied as the data, ~0 = one image per leaf).\n",
        "| G's input | "
        + " | ".join(f"step {s}" for s, _ in rows[0]["diversity"])
        + " | seconds |",
        "|---|" + "---|" * (len(rows[0]["diversity"]) + 1),
    ]
    for r in rows:
        name = "z and the label embedding" if r["embed_input"] else "z alone (leaf in the norms)"
        cells = " | ".join(f"{v:.2f}" for _, v in r["diversity"])
        lines.append(f"| {name} | {cells} | {r['seconds']:.0f} |")
    (out / "conditional_diversity.md").write_text("\n".join(lines) + "\n")
    last = {("embed_input" if r["embed_input"] else "z_only"): r["diversity"][-1][1] for r in rows}
    print(json.dumps(last))


if __name__ == "__main__":
    main()
