"""Every computation of the two seed notebooks, as one-line calls, against the numbers they print.

The notebooks' networks are rebuilt with the weights they printed (4 digits),
so the printed results are reproduced to those digits; the notebooks' own
nested-autograd code, run here on the same networks, must agree to float32
rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.autograd import grad

import hoderiv_ext

from conftest import REPO

sys.path.insert(0, str(REPO / "examples"))

from seeds import one_one_network, two_one_network  # noqa: E402


PRINTED = {"atol": 1e-4, "rtol": 0.0}  # the notebooks print 4 decimals


def seed_nested_grad_at(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Notebook 1, cell 3: y, then grad, then grad of grad, at one point."""
    x = x.clone().requires_grad_(True)
    y = f(x)
    y_g1 = grad(y, x, create_graph=True)[0]
    y_g2 = grad(y_g1, x, create_graph=True)[0]
    return y, y_g1, y_g2


def test_one_one_network_at_a_point() -> None:
    net = one_one_network()
    f = lambda x: net(x) + 0.0 * x**2  # noqa: E731 - the notebook's f
    result = hoderiv_ext.derivatives(f, torch.tensor([2.0]), hessian="full")
    assert result.value.shape == result.gradient.shape == result.hessian.shape == (1,)  # as the notebook prints
    torch.testing.assert_close(result.value, torch.tensor([0.5141]), **PRINTED)
    torch.testing.assert_close(result.gradient, torch.tensor([-0.0463]), **PRINTED)
    torch.testing.assert_close(result.hessian, torch.tensor([0.0278]), **PRINTED)
    for mine, seeds in zip((result.value, result.gradient, result.hessian), seed_nested_grad_at(f, torch.tensor([2.0]))):
        torch.testing.assert_close(mine, seeds)


def test_one_one_network_over_an_array() -> None:
    net = one_one_network()
    f = lambda x: net(x) + 0.0 * x**2  # noqa: E731
    result = hoderiv_ext.derivatives(f, torch.tensor([1.0, 2.0]), hessian="full")
    torch.testing.assert_close(result.value, torch.tensor([0.5711, 0.5141]), **PRINTED)
    torch.testing.assert_close(result.gradient, torch.tensor([-0.0628, -0.0463]), **PRINTED)
    torch.testing.assert_close(result.hessian, torch.tensor([-0.0005, 0.0278]), **PRINTED)
    # the notebook loops over the samples of a (2, 1) array
    x_arr = torch.tensor([1.0, 2.0]).reshape(2, 1)
    looped = [torch.cat(seed_nested_grad_at(f, x)) for x in x_arr]
    expected = torch.stack(looped)  # (2, 3): y, y', y'' per sample
    torch.testing.assert_close(torch.stack([result.value, result.gradient, result.hessian], 1), expected)
    # the same array given as (N, 1) keeps the input axes
    column = hoderiv_ext.derivatives(f, x_arr, hessian="full")
    assert column.gradient.shape == (2, 1) and column.hessian.shape == (2, 1, 1)
    torch.testing.assert_close(column.hessian.reshape(2), result.hessian)


def test_one_one_network_results_train_like_the_seed() -> None:
    """The second derivative keeps its graph to the parameters, as the notebook's create_graph=True does."""
    net = one_one_network()
    f = lambda x: net(x) + 0.0 * x**2  # noqa: E731
    result = hoderiv_ext.derivatives(f, torch.tensor([2.0]), hessian="full")
    options = dict(allow_unused=True, materialize_grads=True)  # y'' does not depend on the last bias
    mine = grad(result.hessian.sum(), list(net.parameters()), **options)
    theirs = grad(seed_nested_grad_at(f, torch.tensor([2.0]))[2].sum(), list(net.parameters()), **options)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)


def test_two_one_map_gradient_and_hessian_rows_at_a_point() -> None:
    net = two_one_network()
    f = lambda x: net(x) + torch.sum(x**3)  # noqa: E731 - the notebook's f (not a plain Sequential)
    result = hoderiv_ext.derivatives(f, torch.tensor([0.0, 1.0]), hessian=[0, 1])
    torch.testing.assert_close(result.value, torch.tensor(1.2399), **PRINTED)
    torch.testing.assert_close(result.gradient, torch.tensor([0.5596, 3.1991]), **PRINTED)
    torch.testing.assert_close(result.hessian_rows[0], torch.tensor([0.0, 0.0]))  # y_g2_0
    torch.testing.assert_close(result.hessian_rows[1], torch.tensor([0.0, 6.0]))  # y_g2_1
    just_row_1 = hoderiv_ext.derivatives(f, torch.tensor([0.0, 1.0]), hessian=[1])
    torch.testing.assert_close(just_row_1.hessian_rows, torch.tensor([[0.0, 6.0]]))


def test_two_one_map_over_a_batch_is_refused_and_the_per_sample_form_works() -> None:
    net = two_one_network()
    f = lambda x: net(x) + torch.sum(x**3)  # noqa: E731 - sums over the whole batch
    batch = torch.tensor([[0.0, 1.0], [1.0, 2.0], [-1.0, 0.5]])
    with pytest.raises(ValueError, match=r"f mixes samples.*x\.pow\(3\)\.sum\(-1, keepdim=True\)"):
        hoderiv_ext.derivatives(f, batch, hessian="full")
    per_sample = lambda x: net(x) + x.pow(3).sum(-1, keepdim=True)  # noqa: E731
    result = hoderiv_ext.derivatives(per_sample, batch, hessian="full")
    torch.testing.assert_close(result.hessian, torch.diag_embed(6 * batch))
    torch.testing.assert_close(result.gradient, net.weight.detach().expand(3, 2) + 3 * batch**2)


def seed_second_derivative(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Notebook 2, cell 3 (without the prints): a loop over columns."""
    dy_dx = torch.zeros(x.shape)
    d2y_dx2 = torch.zeros(x.shape)
    for i in range(x.shape[1]):
        g = grad(y[:, i].unsqueeze(1), x, torch.ones(x.size()[0], 1), create_graph=True, retain_graph=True)[0]
        gg = grad(g[:, i].unsqueeze(1), x, torch.ones(x.size()[0], 1), create_graph=True, retain_graph=True)[0]
        dy_dx += g
        d2y_dx2 += gg
    return dy_dx, d2y_dx2


def test_cubic_first_and_second_derivatives_over_a_batch() -> None:
    x = 2 * torch.rand((5, 3))
    cubic = lambda t: t**3 + 2 * t  # noqa: E731
    result = hoderiv_ext.derivatives(cubic, x.reshape(-1), hessian="diagonal")
    torch.testing.assert_close(result.gradient.reshape(5, 3), 3 * x**2 + 2)
    torch.testing.assert_close(result.hessian_diagonal.reshape(5, 3), 6 * x)
    leaf = x.clone().requires_grad_(True)
    seeds_first, seeds_second = seed_second_derivative(cubic(leaf), leaf)
    torch.testing.assert_close(result.gradient.reshape(5, 3), seeds_first)
    torch.testing.assert_close(result.hessian_diagonal.reshape(5, 3), seeds_second)


def test_cubic_as_a_three_to_three_map() -> None:
    """The same numbers from the (N, d) batch: the Jacobian is diagonal, d2y_i/dx_i^2 on the Hessian diagonals."""
    x = 2 * torch.rand((5, 3))
    result = hoderiv_ext.derivatives(lambda t: t**3 + 2 * t, x, hessian="diagonal")
    assert result.gradient.shape == (5, 3, 3) and result.hessian_diagonal.shape == (5, 3, 3)
    torch.testing.assert_close(result.gradient, torch.diag_embed(3 * x**2 + 2))
    torch.testing.assert_close(result.hessian_diagonal.diagonal(dim1=1, dim2=2), 6 * x)


def test_least_squares_newton_step() -> None:
    x = torch.arange(10.0)
    y = 2 * x + 3
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    loss = 0.5 * (a * x + b - y).pow(2).sum()
    torch.testing.assert_close(loss.detach(), torch.tensor(885.0))
    both = hoderiv_ext.hessian_rows(loss, [a, b])
    torch.testing.assert_close(both.hessian_rows, torch.tensor([[285.0, 45.0], [45.0, 10.0]]))  # the notebook's mat
    torch.testing.assert_close(-both.gradient, torch.tensor([705.0, 120.0]))  # its vec
    step_a, step_b = hoderiv_ext.newton_step(loss, [a, b])
    torch.testing.assert_close(float(a + step_a), 2.0)
    torch.testing.assert_close(float(b + step_b), 3.0)
    ab = torch.zeros((2,), requires_grad=True)
    (step,) = hoderiv_ext.newton_step(0.5 * (ab[0] * x + ab[1] - y).pow(2).sum(), ab)
    torch.testing.assert_close(step, torch.tensor([2.0, 3.0]))


@pytest.mark.slow
def test_example_script_runs_and_prints_the_notebooks_numbers() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "seeds.py")], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    for expected in ("0.5141", "-0.0463", "0.0278", "0.5711", "-0.0628", "-0.0005", "1.2399", "3.1991",
                     "[0., 6.]", "f mixes samples", "a, b after one Newton step: 2.0 3.0", "vector form (a, b): [2.0, 3.0]"):
        assert expected in out, f"{expected!r} missing from the example's output:\n{out}"
