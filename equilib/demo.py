"""Demo: build a small P4 (C4) network and a plain CNN, and print their measured equivariance.

    python -m equilib.demo [--group C4|D4] [--size 29] [--seed 0]

The P4 network is LiftingConv -> GroupBatchNorm -> relu -> GroupConv -> GroupBatchNorm -> relu
-> GroupConv -> GroupPool -> spatial mean; the plain CNN has the same layout with ``Conv`` and
about the same number of parameters. Both are untrained (equivariance is a property of the
architecture). Printed: the relative error of the invariant output under every group element,
of the group feature maps (equivariance), and at off-grid angles (30, 45 degrees: approximate,
measured in a central disk on a smooth input), and ``check_exact`` on a bad input size.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import check_exact, nn
from equilib.groups import Cyclic, Dihedral, Group
from equilib.testing import equivariance_errors, smooth_random


class P4Net(nnx.Module):
    def __init__(self, group: Group, width: int = 8, *, rngs: nnx.Rngs):
        self.lift = nn.LiftingConv(1, width, 3, group=group, stride=2, rngs=rngs)
        self.bn1 = nn.GroupBatchNorm(width, group=group, rngs=rngs)
        self.conv2 = nn.GroupConv(width, width, 3, group=group, rngs=rngs)
        self.bn2 = nn.GroupBatchNorm(width, group=group, rngs=rngs)
        self.conv3 = nn.GroupConv(width, 10, 3, group=group, rngs=rngs)
        self.pool = nn.GroupPool("max")

    def features(self, x):
        x = jax.nn.relu(self.bn1(self.lift(x)))
        x = jax.nn.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)

    def __call__(self, x):
        return jnp.mean(self.pool(self.features(x)), axis=(1, 2))


class PlainNet(nnx.Module):
    def __init__(self, width: int = 16, *, rngs: nnx.Rngs):
        self.conv1 = nn.Conv(1, width, 3, stride=2, rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, rngs=rngs)
        self.conv2 = nn.Conv(width, width, 3, rngs=rngs)
        self.bn2 = nnx.BatchNorm(width, rngs=rngs)
        self.conv3 = nn.Conv(width, 10, 3, rngs=rngs)

    def features(self, x):
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = jax.nn.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)

    def __call__(self, x):
        return jnp.mean(self.features(x), axis=(1, 2))


def n_params(model) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", default="C4", choices=["C4", "D4"])
    p.add_argument("--size", type=int, default=29, help="input size (odd keeps stride 2 exact)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    group = Cyclic(4) if args.group == "C4" else Dihedral(4)

    t0 = time.perf_counter()
    p4 = P4Net(group, rngs=nnx.Rngs(args.seed))
    plain = PlainNet(rngs=nnx.Rngs(args.seed))
    p4.eval()
    plain.eval()
    build = time.perf_counter() - t0
    x = smooth_random(jax.random.key(args.seed), (4, args.size, args.size, 1), sigma=1.5)

    fwd = nnx.jit(lambda m, x: m(x))
    feat = nnx.jit(lambda m, x: m.features(x))
    inv = equivariance_errors(lambda x: fwd(p4, x), x, group, output="invariant")
    eqv = equivariance_errors(lambda x: feat(p4, x), x, group, output="regular")
    ctl = equivariance_errors(lambda x: fwd(plain, x), x, group, output="invariant")
    ctl_feat = equivariance_errors(lambda x: feat(plain, x), x, group, output="plain")
    # off-grid angles: 30 and 45 degrees are elements of C12 and C8; only invariance can be asked
    off = {deg: equivariance_errors(lambda x: fwd(p4, x), x, Cyclic(n), output="invariant", elements=[1])[1]
           for deg, n in ((30, 12), (45, 8))}
    off_plain = {deg: equivariance_errors(lambda x: fwd(plain, x), x, Cyclic(n), output="invariant", elements=[1])[1]
                 for deg, n in ((30, 12), (45, 8))}

    print(f"equilib demo: {group.name} network ({n_params(p4):,} params) vs plain CNN "
          f"({n_params(plain):,} params), untrained, input {tuple(x.shape)}, built in {build:.2f} s")
    print("relative change of the output (invariance) and of the feature maps (equivariance) "
          "when the input is rotated")
    print(f"{'element':>26} | {'P4 invariance':>13} | {'P4 equivariance':>15} | {'plain invariance':>16} | "
          f"{'plain equivariance':>18}")
    for g in range(group.order):
        name = f"rot {group.rotation(g) * 90:3d} deg" + (" + mirror" if group.flip(g) else "")
        print(f"{name:>26} | {inv[g]:13.2e} | {eqv[g]:15.2e} | {ctl[g]:16.2e} | {ctl_feat[g]:18.2e}")
    for deg in off:
        print(f"{f'rot {deg} deg (off-grid)':>26} | {off[deg]:13.2e} | {'n/a':>15} | {off_plain[deg]:16.2e} | "
              f"{'n/a':>18}")
    bad = check_exact(p4, (1, args.size + 1, args.size + 1, 1))
    print(f"check_exact at size {args.size + 1}: {len(bad)} problem(s)" + (f": {bad[0]}" if bad else ""))
    worst = max(max(inv.values()), max(eqv.values()))
    print(f"max error over {group.name}: {worst:.2e} (fp32 exact: <= 1e-5); plain CNN: "
          f"{max(ctl.values()):.2e} (output), {max(ctl_feat.values()):.2e} (feature maps)")
    return {"invariance": inv, "equivariance": eqv, "plain": ctl, "plain_features": ctl_feat,
            "off_grid": off, "off_grid_plain": off_plain}


if __name__ == "__main__":
    main()
