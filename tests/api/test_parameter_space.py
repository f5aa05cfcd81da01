"""Gradient, Hessian rows and Newton steps of a scalar loss with respect to parameters (api/parameters.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoderiv_ext import hessian_rows, newton_step

from conftest import record_grad_calls, refuse_batched_grads


def least_squares(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The seed's loss 0.5 * sum (a x + b - y)^2 with y = 2x + 3, x = 0..9."""
    x = torch.arange(10.0, dtype=a.dtype)
    return 0.5 * (a * x + b - (2 * x + 3)).pow(2).sum()


def nonquadratic(params: list[torch.Tensor]) -> torch.Tensor:
    w, b, s = params
    return (torch.tanh(w) @ b).sin().sum() * s.exp() + (w**3).sum() * b.sum()


def make_params(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(2, 3), (3,), ()]
    return [torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_(True) for shape in shapes]


def flat_reference_hessian(params: list[torch.Tensor]) -> torch.Tensor:
    sizes = [p.numel() for p in params]

    def of_flat(flat: torch.Tensor) -> torch.Tensor:
        pieces = [piece.reshape(p.shape) for piece, p in zip(flat.split(sizes), params)]
        return nonquadratic(pieces)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(of_flat, flat)


def test_least_squares_gradient_and_hessian_match_the_normal_equations() -> None:
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    result = hessian_rows(least_squares(a, b), [a, b])
    torch.testing.assert_close(result.gradient, torch.tensor([-705.0, -120.0]))
    torch.testing.assert_close(result.hessian_rows, torch.tensor([[285.0, 45.0], [45.0, 10.0]]))


def test_least_squares_is_solved_in_one_newton_step() -> None:
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    step_a, step_b = newton_step(least_squares(a, b), [a, b])
    assert step_a.shape == () and step_b.shape == ()
    torch.testing.assert_close(a.detach() + step_a, torch.tensor(2.0))
    torch.testing.assert_close(b.detach() + step_b, torch.tensor(3.0))


def test_least_squares_vector_form() -> None:
    ab = torch.zeros(2, requires_grad=True)
    (step,) = newton_step(least_squares(ab[0], ab[1]), ab)
    torch.testing.assert_close(step, torch.tensor([2.0, 3.0]))


def test_newton_step_from_any_start_lands_on_the_minimiser() -> None:
    ab = torch.tensor([-7.0, 11.0], dtype=torch.float64, requires_grad=True)
    (step,) = newton_step(least_squares(ab[0], ab[1]), [ab])
    torch.testing.assert_close(ab.detach() + step, torch.tensor([2.0, 3.0], dtype=torch.float64))


def test_full_hessian_matches_autograd_functional_hessian() -> None:
    params = make_params()
    result = hessian_rows(nonquadratic(params), params)
    expected = flat_reference_hessian(params)
    assert result.hessian_rows.shape == (10, 10) and result.gradient.shape == (10,)
    torch.testing.assert_close(result.hessian_rows, expected)
    flat_gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(nonquadratic(params), params)])
    torch.testing.assert_close(result.gradient, flat_gradient)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), data=st.data())
def test_selected_rows_are_rows_of_the_full_hessian(seed: int, data: st.DataObject) -> None:
    params = make_params(seed)
    rows = data.draw(st.lists(st.integers(-10, 9), min_size=1, max_size=10, unique_by=lambda i: i % 10))
    result = hessian_rows(nonquadratic(params), params, rows)
    expected = flat_reference_hessian(params)[[r % 10 for r in rows]]
    torch.testing.assert_close(result.hessian_rows, expected)


def test_rows_accept_a_tensor_and_keep_the_order() -> None:
    params = make_params()
    full = hessian_rows(nonquadratic(params), params).hessian_rows
    picked = hessian_rows(nonquadratic(params), params, torch.tensor([9, 0, 4])).hessian_rows
    torch.testing.assert_close(picked, full[[9, 0, 4]])


def test_rows_are_computed_in_one_batched_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_grad_calls(monkeypatch)
    params = make_params()
    hessian_rows(nonquadratic(params), params)
    assert calls == [False, True]  # the gradient, then all 10 rows in one batched pass


def test_rows_fall_back_to_one_pass_per_row_when_batching_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    params = make_params()
    expected = hessian_rows(nonquadratic(params), params).hessian_rows
    refuse_batched_grads(monkeypatch)
    torch.testing.assert_close(hessian_rows(nonquadratic(params), params).hessian_rows, expected)


def test_a_parameter_the_loss_ignores_gets_zeros() -> None:
    a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    unused = torch.ones(3, dtype=torch.float64, requires_grad=True)
    result = hessian_rows(a**3, [a, unused])
    torch.testing.assert_close(result.gradient, torch.tensor([3.0, 0, 0, 0], dtype=torch.float64))
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 0] = 6.0
    torch.testing.assert_close(result.hessian_rows, expected)
    linear = hessian_rows(2 * a + unused.sum(), [a, unused])  # the gradient is constant: H = 0
    torch.testing.assert_close(linear.hessian_rows, torch.zeros(4, 4, dtype=torch.float64))


def test_results_are_detached_unless_create_graph() -> None:
    params = make_params()
    plain = hessian_rows(nonquadratic(params), params, [0])
    assert not plain.hessian_rows.requires_grad and not plain.gradient.requires_grad
    graph = hessian_rows(nonquadratic(params), params, [0], create_graph=True)
    assert graph.hessian_rows.requires_grad
    # third derivative of (w^3).sum() * b.sum() along w[0, 0] three times: 6 * b.sum()
    w, b, _ = params
    cube = hessian_rows((w**3).sum() * b.sum(), [w], [0], create_graph=True)
    (third,) = torch.autograd.grad(cube.hessian_rows[0, 0], w)
    torch.testing.assert_close(third[0, 0], 6 * b.sum().detach())


def test_the_loss_graph_survives_for_a_later_backward() -> None:
    params = make_params()
    loss = nonquadratic(params)
    hessian_rows(loss, params)
    loss.backward()
    assert all(p.grad is not None for p in params)


def test_singular_hessian_is_refused_with_a_hint_and_damping_fixes_it() -> None:
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    unused = torch.zeros((), requires_grad=True)
    loss = least_squares(a, b) + 0 * unused
    with pytest.raises(torch.linalg.LinAlgError, match="singular.*damping"):
        newton_step(loss, [a, b, unused])
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):  # below float32 resolution of H: still singular
        newton_step(loss, [a, b, unused], damping=1e-6)
    step_a, step_b, step_unused = newton_step(loss, [a, b, unused], damping=1e-2)
    torch.testing.assert_close(step_a, torch.tensor(2.0), atol=0.05, rtol=0)
    torch.testing.assert_close(step_b, torch.tensor(3.0), atol=0.05, rtol=0)
    torch.testing.assert_close(step_unused, torch.tensor(0.0))
    redundant = torch.zeros(2, requires_grad=True)  # only the sum matters: H = [[1, 1], [1, 1]]
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):
        newton_step(0.5 * (redundant.sum() - 1) ** 2, redundant)


def test_non_finite_derivatives_are_refused() -> None:
    a = torch.tensor(0.0, requires_grad=True)
    with pytest.raises(ValueError, match="non-finite"):
        newton_step(a.abs().sqrt(), a)


@pytest.mark.parametrize("damping", [-1.0, float("nan"), float("inf"), "1", True])
def test_bad_damping_is_refused(damping: object) -> None:
    a = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="damping"):
        newton_step(a**2, a, damping=damping)


def test_bad_arguments_are_named() -> None:
    a = torch.tensor(1.0, requires_grad=True)
    frozen = torch.tensor(2.0)
    with pytest.raises(ValueError, match=r"params\[1\].*does not require grad"):
        hessian_rows(a * frozen, [a, frozen])
    with pytest.raises(ValueError, match="scalar"):
        hessian_rows(a * torch.ones(3), a)
    with pytest.raises(TypeError, match="loss must be a scalar torch.Tensor"):
        hessian_rows(1.0, a)
    with pytest.raises(ValueError, match="no autograd graph"):
        hessian_rows(torch.tensor(1.0), a)
    with pytest.raises(TypeError, match="params must be"):
        hessian_rows(a**2, {"a": a})
    with pytest.raises(TypeError, match=r"params\[0\] must be a torch.Tensor"):
        hessian_rows(a**2, [1.0])
    with pytest.raises(ValueError, match="at least one"):
        hessian_rows(a**2, [])
    with pytest.raises(ValueError, match="rows: index 1 is out of range"):
        hessian_rows(a**2, a, [1])
    with pytest.raises(ValueError, match="rows names the same index"):
        hessian_rows(a**2 * frozen, [a], [0, -1])
    with pytest.raises(ValueError, match="scalar"):
        newton_step(a * torch.ones(2), a)


def test_a_one_element_loss_counts_as_scalar() -> None:
    a = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    result = hessian_rows((a**2).reshape(1), a)
    torch.testing.assert_close(result.hessian_rows, torch.tensor([[2.0]], dtype=torch.float64))
