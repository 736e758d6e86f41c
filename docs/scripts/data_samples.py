"""Write 8x8 grids of the first 64 training digits of MNIST-rot and MNIST-scale (seed 0) to
docs/images/mnist_rot_samples.png and docs/images/mnist_scale_samples.png.

Run from anywhere, with MNIST available (e.g. ``EQUILIB_DATA_DIR=../shared/data``)::

    python docs/scripts/data_samples.py [--seed 0] [--out docs/images]

The datasets are regenerated (or read from the cache, ``$EQUILIB_CACHE_DIR``) by
:func:`equilib.data.mnist_rot` / :func:`equilib.data.mnist_scale`. Needs matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from equilib import data  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def grid(x, y, title: str, path: Path) -> None:
    fig, axes = plt.subplots(8, 8, figsize=(6.0, 6.6), dpi=80)
    for i, ax in enumerate(axes.flat):
        ax.imshow(x[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(str(int(y[i])), fontsize=7, pad=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.90, wspace=0.05, hspace=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    rot = data.mnist_rot(args.seed)["train"]
    grid(*rot, f"MNIST-rot (regenerated), seed {args.seed}: the first 64 training digits\n"
               f"angle ~ U[0, 2pi), bilinear; titles are the labels",
         args.out / "mnist_rot_samples.png")
    scale = data.mnist_scale(args.seed)["train"]
    grid(*scale, f"MNIST-scale (SESN recipe), seed {args.seed}: the first 64 training digits\n"
                 f"factor ~ U[0.3, 1], bicubic; titles are the labels",
         args.out / "mnist_scale_samples.png")


if __name__ == "__main__":
    main()
