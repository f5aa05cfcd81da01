"""The two seed notebooks (shared/seeds/), each computation as a one-line call.

    python examples/seeds.py        # hoderiv_ext installed, or PYTHONPATH=. from the repository root

Notebook 1 ("Higher order derivatives with pytorch"):
  * a 1-1 network f(x) = net(x) + 0 x^2: first and second derivatives at a
    point and over an array (the notebook loops over samples);
  * a 2-1 map f(x) = net(x) + sum(x^3): gradient and Hessian rows at a point.
Notebook 2:
  * first and second derivatives of x^3 + 2x over a batch (the notebook loops
    over columns);
  * least squares fit of a x + b to y = 2x + 3 as one Newton step (the
    notebook assembles the 2x2 Hessian entry by entry).

The networks get the weights the notebooks printed, so the printed numbers
match the notebooks' (to their 4 printed digits). ``create_graph=False``
returns plain tensors for printing; leave it out inside a training loss.
"""

from __future__ import annotations

import torch
from torch import nn

import hoderiv_ext


def one_one_network() -> nn.Sequential:
    """Notebook 1's ``nn.Sequential(Linear(1, 2), Sigmoid(), Linear(2, 1))`` with its printed weights."""
    net = nn.Sequential(nn.Linear(1, 2), nn.Sigmoid(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.3677], [-0.9834]]))
        net[0].bias.copy_(torch.tensor([0.6622, 0.8933]))
        net[2].weight.copy_(torch.tensor([[0.3594, 0.3605]]))
        net[2].bias.copy_(torch.tensor([0.1341]))
    return net


def two_one_network() -> nn.Linear:
    """Notebook 1's ``nn.Linear(2, 1)`` with its printed weights."""
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.5596, 0.1991]]))
        net.bias.copy_(torch.tensor([0.0408]))
    return net


def notebook_1() -> None:
    print("== Notebook 1: the 1-1 mapping f(x) = net(x) + 0 x^2")
    net = one_one_network()
    f = lambda x: net(x) + 0.0 * x**2  # noqa: E731 - as in the notebook

    at_point = hoderiv_ext.derivatives(f, torch.tensor([2.0]), hessian="full", create_graph=False)
    print("at x = 2:        y", at_point.value, " y'", at_point.gradient, " y''", at_point.hessian)

    over_array = hoderiv_ext.derivatives(f, torch.tensor([1.0, 2.0]), hessian="full", create_graph=False)
    print("at x = [1, 2]:   y", over_array.value, " y'", over_array.gradient, " y''", over_array.hessian)

    print("== Notebook 1: the 2-1 mapping f(x) = net(x) + sum(x^3), at x = (0, 1)")
    net2 = two_one_network()
    f2 = lambda x: net2(x) + torch.sum(x**3)  # noqa: E731 - as in the notebook (one point only)
    at_01 = hoderiv_ext.derivatives(f2, torch.tensor([0.0, 1.0]), hessian=[0, 1], create_graph=False)
    print("y", at_01.value, " gradient", at_01.gradient)
    print("Hessian row 0", at_01.hessian_rows[0], " row 1", at_01.hessian_rows[1])

    # torch.sum(x**3) sums over the whole batch: fine for one point, wrong for many.
    # derivatives() refuses it; the per-sample form works on a batch.
    batch = torch.tensor([[0.0, 1.0], [1.0, 2.0], [-1.0, 0.5]])
    try:
        hoderiv_ext.derivatives(f2, batch, hessian="full")
    except ValueError as error:
        print("batched f2 refused:", str(error).split(" (")[0])
    f2_per_sample = lambda x: net2(x) + x.pow(3).sum(-1, keepdim=True)  # noqa: E731
    batched = hoderiv_ext.derivatives(f2_per_sample, batch, hessian="full", create_graph=False)
    print("per-sample f2 over 3 points: Hessians\n", batched.hessian)


def notebook_2() -> None:
    print("== Notebook 2: y = x^3 + 2x over a (5, 3) batch, every entry a scalar input")
    x = 2 * torch.rand((5, 3))
    cube = hoderiv_ext.derivatives(lambda t: t**3 + 2 * t, x.reshape(-1), hessian="diagonal", create_graph=False)
    first, second = cube.gradient.reshape(x.shape), cube.hessian_diagonal.reshape(x.shape)
    print("1st derivative\n", first, "\n3x^2 + 2\n", 3 * x**2 + 2)
    print("2nd derivative\n", second, "\n6x\n", 6 * x)
    print("max |error|:", float((first - (3 * x**2 + 2)).abs().max()), float((second - 6 * x).abs().max()))

    print("== Notebook 2: least squares a x + b ~ y = 2x + 3 in one Newton step")
    xs = torch.arange(10.0)
    ys = 2 * xs + 3
    a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    loss = 0.5 * (a * xs + b - ys).pow(2).sum()
    print("loss", loss)
    both = hoderiv_ext.hessian_rows(loss, [a, b])
    print("Hessian\n", both.hessian_rows, "\n-gradient", -both.gradient)
    step_a, step_b = hoderiv_ext.newton_step(loss, [a, b])
    print("a, b after one Newton step:", float(a + step_a), float(b + step_b))

    ab = torch.zeros((2,), requires_grad=True)
    loss_vector = 0.5 * (ab[0] * xs + ab[1] - ys).pow(2).sum()
    (step,) = hoderiv_ext.newton_step(loss_vector, ab)
    print("vector form (a, b):", (ab + step).tolist())


if __name__ == "__main__":
    torch.manual_seed(0)
    notebook_1()
    notebook_2()
