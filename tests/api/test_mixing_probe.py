"""The sample-mixing probe sees mixing into any row of the batch."""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext import derivatives


def _last_row_reads_the_first(t: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(t.shape[0], device=t.device).unsqueeze(1)
    mixed = torch.where(rows == t.shape[0] - 1, t[:1].expand_as(t) + t, t)
    return (mixed**2).sum(-1)


def _neighbour(t: torch.Tensor) -> torch.Tensor:
    return (t * t.roll(1, 0)).sum(-1)


@pytest.mark.parametrize("f", [_last_row_reads_the_first, _neighbour, lambda t: (t - t.mean(0)).pow(2).sum(-1)],
                         ids=["last-row", "neighbour", "batch-mean"])
@pytest.mark.parametrize("n", [2, 3, 9, 64])
@pytest.mark.parametrize("backend", ["auto", "autograd"])
def test_mixing_into_any_row_is_refused(f, n, backend):
    """Regression: the probe compared rows 0 and 1 only; mixing into the last row passed unnoticed.

    backend="autograd" runs the probe; "auto" traces f first and finds the op that mixes (roll has no
    jet rule: there the probe runs too).
    """
    x = torch.randn(n, 3, dtype=torch.float64)
    match = "f mixes samples: its output for sample" if backend == "autograd" else "f mixes samples"
    with pytest.raises(ValueError, match=match):
        derivatives(f, x, hessian="laplacian", backend=backend)


def test_the_probe_names_the_sample_and_leaves_per_sample_functions_alone():
    x = torch.randn(9, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="output for sample 8 "):
        derivatives(_last_row_reads_the_first, x, hessian=None, backend="autograd")
    with pytest.raises(ValueError, match=r"batch size as a number \(aten\.arange"):
        derivatives(_last_row_reads_the_first, x, hessian=None)
    result = derivatives(lambda t: (t**3).sum(-1), x, hessian="laplacian")
    torch.testing.assert_close(result.laplacian, 6 * x.sum(-1))
    assert derivatives(_neighbour, x, hessian=None, check_independence=False).value.shape == (9,)
