"""The networks of the architecture workloads: MLP-like models that are not a plain ``nn.Sequential`` MLP.

Every model maps a batch x of shape (N, d) to (N, 1), one sample per row (no
op mixes samples), so every method of the suite computes per-sample input
derivatives of it:

  mlp       the plain Sequential MLP of the other workloads (methods.tanh_mlp)
  residual  h = Linear(d, w)(x); then ``depth`` blocks h = h + tanh(Linear(w, w)(h)); out Linear(w, 1)
  fourier   fixed random Fourier features (a buffer B of shape (d, w/2), B ~ N(0, 1), scale 1.0):
            cat([sin(x @ B), cos(x @ B)]), then a tanh MLP 2(w/2) -> w x depth -> 1
  siren     Sequential of Linear and :class:`~hoderiv_bench.methods.Sine` modules, sin(30 z) after
            the first layer and sin(z) after the others, with SIREN's initialisation (first layer
            U(-1/d, 1/d), the others U(-sqrt(6/w), sqrt(6/w)), i.e. the w0 = 30 of the paper
            folded into the hidden weights)
  hardbc    a hard boundary condition u = x_0 (1 - x_0) mlp(x) (x_0 = x[:, :1]) on a tanh MLP

Every model is built from ``torch.manual_seed(seed)`` (and, for the Fourier
features, a generator seeded with ``seed + 1``), so the same workload builds the
same network every time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hoderiv_bench.methods import Sine, tanh_mlp

ARCHITECTURES = ("mlp", "residual", "fourier", "siren", "hardbc")
NEW_ARCHITECTURES = ARCHITECTURES[1:]
# The activation of each new architecture (the workload's ``function``).
ARCHITECTURE_FUNCTIONS = {"residual": "tanh", "fourier": "tanh", "siren": "sin", "hardbc": "tanh"}
SIREN_W0 = 30.0
FOURIER_SCALE = 1.0


class Residual(nn.Module):
    """h = Linear(d, w)(x); ``depth`` times h = h + tanh(Linear(w, w)(h)); Linear(w, 1)(h)."""

    def __init__(self, d: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.out(h)


class FourierFeatures(nn.Module):
    """cat([sin(x @ B), cos(x @ B)]) with a fixed (buffer, not trained) B of shape (d, features/2)."""

    def __init__(self, d: int, features: int, scale: float = FOURIER_SCALE, seed: int = 1) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("B", scale * torch.randn(d, max(1, features // 2), generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.B
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


class Fourier(nn.Module):
    """Random Fourier features of x, then a tanh MLP of the given width and depth."""

    def __init__(self, d: int, width: int, depth: int, seed: int = 0) -> None:
        super().__init__()
        self.features = FourierFeatures(d, width, seed=seed + 1)
        self.mlp = tanh_mlp(2 * max(1, width // 2), width, depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.features(x))


class HardBC(nn.Module):
    """u(x) = x_0 (1 - x_0) mlp(x): zero on the planes x_0 = 0 and x_0 = 1 whatever the MLP."""

    def __init__(self, d: int, width: int, depth: int) -> None:
        super().__init__()
        self.mlp = tanh_mlp(d, width, depth)

    def forward(self, x: Tensor) -> Tensor:
        x0 = x[:, :1]
        return x0 * (1 - x0) * self.mlp(x)


def siren(d: int, width: int, depth: int, w0: float = SIREN_W0) -> nn.Sequential:
    """Linear(d, w), Sine(w0), then (Linear(w, w), Sine()) x (depth - 1), Linear(w, 1), SIREN-initialised."""
    layers: list[nn.Module] = [nn.Linear(d, width), Sine(w0)]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), Sine()]
    layers.append(nn.Linear(width, 1))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        linears = [m for m in net if isinstance(m, nn.Linear)]
        linears[0].weight.uniform_(-1.0 / d, 1.0 / d)
        for linear in linears[1:]:
            bound = math.sqrt(6.0 / linear.in_features)
            linear.weight.uniform_(-bound, bound)
    return net


def build_model(architecture: str, d: int, width: int, depth: int, activation: type[nn.Module] = nn.Tanh,
                seed: int = 0) -> nn.Module:
    """The network of an architecture workload, on the CPU in float32 (move it with ``.to``)."""
    torch.manual_seed(seed)
    if architecture == "mlp":
        return tanh_mlp(d, width, depth, activation)
    if architecture == "residual":
        return Residual(d, width, depth)
    if architecture == "fourier":
        return Fourier(d, width, depth, seed=seed)
    if architecture == "siren":
        return siren(d, width, depth)
    if architecture == "hardbc":
        return HardBC(d, width, depth)
    raise ValueError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
