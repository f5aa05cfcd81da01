"""ops.indexing.take: index_select by host-side integers without a host-to-device copy, in both forms."""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.ops.indexing import is_run, take


@pytest.mark.parametrize("views", [True, False, None])
@pytest.mark.parametrize("indices", [(0,), (1, 2, 3), (2, 0), (3, 3, 1), (0, 2, 4), (4, 3, 2, 1, 0)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_take_is_index_select(axis: int, indices: tuple[int, ...], views: bool | None) -> None:
    tensor = torch.arange(5 * 5 * 5, dtype=torch.float64).reshape(5, 5, 5)
    got = take(tensor, axis, indices, views)
    torch.testing.assert_close(got, tensor.index_select(axis, torch.tensor(indices)), rtol=0, atol=0)


def test_a_run_is_a_view_and_the_rest_keep_gradients() -> None:
    tensor = torch.randn(4, 6, requires_grad=True)
    assert take(tensor, 1, (2, 3, 4))._base is tensor
    for views in (True, False):
        (grad,) = torch.autograd.grad(take(tensor, 1, (5, 0, 5), views).sum(), tensor)
        torch.testing.assert_close(grad[0], torch.tensor([1.0, 0, 0, 0, 0, 2]))


def test_is_run_and_no_indices() -> None:
    assert is_run((3,)) and is_run((1, 2, 3)) and not is_run((1, 3)) and not is_run((2, 1)) and not is_run(())
    with pytest.raises(ValueError, match="no indices"):
        take(torch.zeros(3), 0, ())
