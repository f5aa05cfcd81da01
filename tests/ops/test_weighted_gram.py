"""weighted_gram (ops/gram.py): mixed mode's per-sample terms sum_u left_iu w_u right_ju, against torch ops.

The CPU kernel and the composite kernel of the other devices against ``(left * w[:, None]) @ right^T``
on random shapes (strided, expanded, unit counts that are not a multiple of the kernel's lanes, empty),
property-based; opcheck; gradcheck / gradgradcheck in float64; bad arguments named.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoderiv_ext.ops.gram import shared_weighted_gram, weighted_gram

from conftest import DEVICES, tolerances


def reference(left: torch.Tensor, weight: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return (left.double() * weight.double().unsqueeze(1)) @ right.double().transpose(1, 2)


def operands(n: int, k: int, d: int, m: int, dtype=torch.float64, device="cpu", seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=generator, dtype=dtype).to(device)  # noqa: E731
    return make(n, k, m), make(n, m), make(n, d, m)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "k", "d", "m"), [(5, 3, 4, 7), (9, 8, 8, 64), (3, 2, 16, 33), (2, 1, 1, 1),
                                                (4, 8, 8, 200), (1, 3, 3, 16)])
def test_matches_torch_ops(n, k, d, m, dtype, device):
    left, weight, right = operands(n, k, d, m, dtype, device)
    got = weighted_gram(left, weight, right)
    assert got.shape == (n, k, d) and got.dtype == dtype and got.device.type == device
    tol = tolerances(dtype)
    torch.testing.assert_close(got.double(), reference(left, weight, right), rtol=tol["rtol"], atol=tol["atol"] * m)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_expanded_operands(device):
    # A traced jet's tangents are a slice of the jet (N, S, m); a shared jet is expanded (stride 0).
    jet = torch.randn(6, 11, 20, dtype=torch.float64, device=device)
    tangents = jet[:, 1:5]
    shared = torch.randn(1, 4, 20, dtype=torch.float64, device=device).expand(6, 4, 20)
    weight = torch.randn(6, 40, dtype=torch.float64, device=device)[:, ::2]  # unit stride 2: copied
    rows = tangents[:, [2, 0]]
    for left, right in ((tangents, tangents), (rows, shared), (shared, tangents)):
        torch.testing.assert_close(weighted_gram(left, weight, right), reference(left, weight, right),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_tangents_shared_by_every_sample(device):
    # A first layer's W^T or a traced affine prefix: both shared is one matrix product; one shared is expanded.
    shared_left = torch.randn(1, 3, 24, dtype=torch.float64, device=device)
    shared_right = torch.randn(1, 5, 24, dtype=torch.float64, device=device)
    per_sample = torch.randn(7, 5, 24, dtype=torch.float64, device=device)
    weight = torch.randn(7, 24, dtype=torch.float64, device=device)
    for left, right in ((shared_left, shared_right), (shared_left, shared_left)):
        got = shared_weighted_gram(left[0], weight, right[0])
        assert got.shape == (7, left.shape[1], right.shape[1])
        torch.testing.assert_close(got, reference(left, weight, right), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weighted_gram(shared_left.expand(7, 3, 24), weight, per_sample),
                               reference(shared_left, weight, per_sample), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "k", "d", "m"), [(0, 3, 3, 8), (4, 0, 3, 8), (4, 3, 0, 8), (4, 3, 3, 0)])
def test_empty_operands(n, k, d, m, device):
    left, weight, right = operands(n, k, d, m, device=device)
    got = weighted_gram(left, weight, right)
    assert got.shape == (n, k, d)
    assert bool((got == 0).all())  # m = 0: an empty sum


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 9), d=st.integers(1, 9), m=st.integers(1, 70), seed=st.integers(0, 99))
def test_property_matches_torch_ops(n, k, d, m, seed):
    left, weight, right = operands(n, k, d, m, seed=seed)
    torch.testing.assert_close(weighted_gram(left, weight, right), reference(left, weight, right),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    left, weight, right = operands(3, 2, 4, 5, device=device)
    torch.library.opcheck(torch.ops.hoderiv_ext.weighted_gram.default,
                          (left.requires_grad_(), weight.requires_grad_(), right.requires_grad_()))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_and_gradgradcheck(device):
    for m in (5, 33):  # the batched matrix product and the one-pass kernel
        left, weight, right = (t.requires_grad_() for t in operands(3, 2, 4, m, device=device))
        assert torch.autograd.gradcheck(weighted_gram, (left, weight, right))
        assert torch.autograd.gradgradcheck(weighted_gram, (left, weight, right))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("k", "m"), [(4, 40), (8, 64), (3, 7)])  # the one-pass kernel (m >= 4k) and below
def test_the_same_tensor_on_both_sides(k, m, device):
    jet = torch.randn(6, 2 + k, m, dtype=torch.float64, device=device)
    tangents = jet[:, 1:1 + k]  # a slice, as a traced jet's tangents
    weight = torch.randn(6, m, dtype=torch.float64, device=device)
    got = weighted_gram(tangents, weight, tangents)
    torch.testing.assert_close(got, reference(tangents, weight, tangents), rtol=1e-12, atol=1e-12)
    if device == "cpu" and m >= 4 * k:  # the one-pass kernel mirrors the upper triangle: exactly symmetric
        assert torch.equal(got, got.transpose(1, 2))
        # also for two views of one tensor (a traced jet's tangents, expanded to the batch as mixed mode does)
        views = weighted_gram(tangents.expand(6, k, m), weight, tangents.view(6, k, m))
        assert torch.equal(views, views.transpose(1, 2)) and torch.equal(views, got)


def test_the_same_tensor_on_both_sides_is_differentiable():
    # T diag(w) T^T with one T: both gradients reach it.
    tangents = torch.randn(3, 4, 17, dtype=torch.float64, requires_grad=True)  # m >= 4k: the one-pass kernel
    weight = torch.randn(3, 17, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, w: weighted_gram(t, w, t), (tangents, weight))
    assert torch.autograd.gradgradcheck(lambda t, w: weighted_gram(t, w, t), (tangents, weight))


@pytest.mark.parametrize(("change", "message"), [
    (lambda a, w, b: (a[0], w, b), "left must be \\(N, k, m\\)"),
    (lambda a, w, b: (a, w, b[0]), "right must be \\(N, d, m\\)"),
    (lambda a, w, b: (a, w[0], b), "weight must be \\(N, m\\)"),
    (lambda a, w, b: (a, w[:2], b), "one batch size N"),
    (lambda a, w, b: (a, w, b[..., :4]), "one unit count m"),
    (lambda a, w, b: (a, w.float(), b), "weight"),
    (lambda a, w, b: (a.int(), w.int(), b.int()), "float32 or float64"),
])
def test_bad_arguments_are_named(change, message):
    left, weight, right = operands(3, 2, 4, 5)
    with pytest.raises(RuntimeError, match=message):
        weighted_gram(*change(left, weight, right))
