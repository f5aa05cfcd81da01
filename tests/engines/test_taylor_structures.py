"""The networks the Taylor engine plans (engines/taylor/plan.py), against the autograd engine.

Random networks (hypothesis: inputs, widths, depth, outputs, activation, request, batch size) and
the structure variants: an activation first, Linear after Linear, nested Sequentials with no-ops,
ending in an activation, affine networks, no biases.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import ACTIVATIONS, REQUESTS, assert_engines_agree, make_mlp


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 16),
    widths=st.lists(st.integers(1, 24), min_size=0, max_size=3),
    outputs=st.integers(1, 3),
    activation=st.sampled_from(ACTIVATIONS),
    hessian=st.sampled_from(["none", "full", "diagonal", "laplacian", "rows"]),
    n=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_property_random_networks(d, widths, outputs, activation, hessian, n, seed):
    net = make_mlp(d, widths, outputs, activation, torch.float64, "cpu", seed)
    if hessian == "rows":
        hessian = sorted({seed % d, (seed // 7) % d})
    x = torch.randn(n, d, dtype=torch.float64)
    assert_engines_agree(net, x, hessian)


def test_supported_structure_variants():
    torch.manual_seed(0)
    nets = [
        nn.Sequential(nn.Tanh(), nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)),  # activation first
        nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 4), nn.Softplus(), nn.Linear(4, 2), nn.Linear(2, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.GELU(), nn.Identity(), nn.Dropout(0.0)), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Flatten()),  # ends with an activation
        nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)),  # affine: zero Hessian
        nn.Sequential(nn.Linear(3, 6, bias=False), nn.Tanh(), nn.Linear(6, 1, bias=False)),
    ]
    for net in nets:
        net = net.double().eval()
        for hessian in REQUESTS:
            assert_engines_agree(net, torch.randn(5, 3, dtype=torch.float64), hessian)
