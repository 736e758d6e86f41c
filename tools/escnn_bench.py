"""escnn's side of ``benchmarks/escnn_compare.py``: train-step throughput of the same architectures.

Runs in escnn's own venv (see ``tools/escnn_reference.py`` for how it is built):

    /work/escnn-venv/bin/python tools/escnn_bench.py --model p4cnn --batch 128 --steps 10 --threads 2
    /work/escnn-venv/bin/python tools/escnn_bench.py --model c16 --batch 2 --size 29 --steps 3

and prints one line ``RESULT {json}`` (seconds per step, images/s, build seconds, parameters,
torch's thread count). Architectures (escnn's ``R2Conv`` / ``InnerBatchNorm`` / pointwise
nonlinearities, regular fields, NCHW):

* ``p4cnn``: Cohen & Welling's P4CNN in escnn: ``gspaces.rot2dOnR2(4)``, a lifting ``R2Conv``
  (trivial -> 10 regular fields, 3x3), five ``R2Conv`` 10 -> 10 regular fields 3x3 and a final
  4x4 one, no padding, ``InnerBatchNorm`` + ``ReLU`` after the first six, ``PointwiseMaxPool``
  2x2 after the second, then ``GroupPooling`` and the maximum over space: ``(B, 10)`` logits
  from ``(B, 1, 28, 28)``. The expanded filters have the shapes of equilib's P4CNN
  (40 -> 40 channels); escnn's band-limited 3x3 basis has fewer free parameters.
* ``c16`` / ``c8``: the 6-layer stack of ``benchmarks/build_time.py`` over ``rot2dOnR2(16)`` / ``(8)`` (regular
  fields 24, 32, 36, 36, 64, 96; kernels 7, 5, 5, 5, 5, 5; padding K//2; ``R2Conv`` +
  ``InnerBatchNorm`` + ``ELU``), then ``GroupPooling``, the maximum over space and a
  ``Linear(96, 10)``.

Train step: forward in train mode (the filters are expanded from the basis each step, as in
equilib), softmax cross-entropy, backward, ``torch.optim.Adam(lr=1e-3)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from escnn import gspaces
from escnn import nn as enn


class Head(torch.nn.Module):
    """GroupPooling, max over space, optional linear layer."""

    def __init__(self, in_type, linear: int | None = None):
        super().__init__()
        self.pool = enn.GroupPooling(in_type)
        self.linear = torch.nn.Linear(len(in_type), linear) if linear else None

    def forward(self, x):
        y = self.pool(x).tensor.amax(dim=(2, 3))
        return self.linear(y) if self.linear is not None else y


class Net(torch.nn.Module):
    def __init__(self, in_type, body, head):
        super().__init__()
        self.in_type, self.body, self.head = in_type, body, head

    def forward(self, x):
        return self.head(self.body(enn.GeometricTensor(x, self.in_type)))


def p4cnn(width: int = 10):
    gs = gspaces.rot2dOnR2(4)
    t_in = enn.FieldType(gs, [gs.trivial_repr])
    reg = enn.FieldType(gs, [gs.regular_repr] * width)
    mods, t = [], t_in
    for i in range(6):
        mods += [enn.R2Conv(t, reg, 3, padding=0), enn.InnerBatchNorm(reg), enn.ReLU(reg)]
        if i == 1:
            mods.append(enn.PointwiseMaxPool(reg, 2))
        t = reg
    mods.append(enn.R2Conv(reg, reg, 4, padding=0))  # 10 fields = 10 classes after pooling
    return Net(t_in, enn.SequentialModule(*mods), Head(reg))


def stack(n: int = 16):
    gs = gspaces.rot2dOnR2(n)
    t_in = enn.FieldType(gs, [gs.trivial_repr])
    mods, t = [], t_in
    for w, k in zip((24, 32, 36, 36, 64, 96), (7, 5, 5, 5, 5, 5)):
        o = enn.FieldType(gs, [gs.regular_repr] * w)
        mods += [enn.R2Conv(t, o, k, padding=k // 2), enn.InnerBatchNorm(o), enn.ELU(o)]
        t = o
    return Net(t_in, enn.SequentialModule(*mods), Head(t, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("p4cnn", "c8", "c16"), default="p4cnn")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = p4cnn() if args.model == "p4cnn" else stack(int(args.model[1:]))
    build_s = time.perf_counter() - t0
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times = []
    c0 = time.process_time()
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    cores = (time.process_time() - c0) / sum(times)
    s = statistics.median(times)
    out = {"model": args.model, "batch": args.batch, "size": args.size, "step_s": s,
           "images_per_s": args.batch / s, "times": times, "build_s": build_s, "cores": cores,
           "params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
