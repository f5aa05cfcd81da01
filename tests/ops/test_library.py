"""The compiled library (ops/library.py): what was built in, every op registered, the fallback without it.

build_info() against the build, each op with its CPU (and, when CI asks, CUDA) kernel, fake kernel and
autograd formula; without the extension the package imports with one warning, falls back to the
autograd engine, and backend="kernel" says why it cannot serve.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hoderiv_ext
from hoderiv_ext import elementwise_derivatives

from conftest import REPO, into_domain


def test_build_info_describes_the_build():
    info = hoderiv_ext.build_info()
    expected_keys = {
        "compiled", "cpu_kernels", "cuda_kernels", "cuda_archs", "cuda_version_built", "torch_version_built",
        "torch_version", "max_kernel_order", "debug", "load_error",
    }
    assert expected_keys <= set(info)
    assert info["compiled"] and info["cpu_kernels"], info["load_error"]
    assert info["load_error"] is None
    assert info["max_kernel_order"] == 8
    from hoderiv_ext.ops.library import MAX_KERNEL_ORDER

    assert MAX_KERNEL_ORDER == info["max_kernel_order"]  # the Python limit mirrors kMaxOrder
    assert info["torch_version_built"] == torch.__version__
    assert info["cuda_kernels"] == bool(info["cuda_archs"])


def test_cuda_kernels_compiled_when_ci_asks_for_them():
    """CI builds with FORCE_CUDA=1 and sets HODERIV_EXPECT_CUDA_KERNELS=1: compile + link + import proven."""
    if os.environ.get("HODERIV_EXPECT_CUDA_KERNELS") != "1":
        import pytest

        pytest.skip("set HODERIV_EXPECT_CUDA_KERNELS=1 when the build must contain the CUDA kernels")
    info = hoderiv_ext.build_info()
    assert info["cuda_kernels"] and info["cuda_archs"], info
    # Every op has its CUDA implementation registered with the dispatcher.
    for qualified in _package_ops():
        if qualified.split("::")[1] in COMPOSITE_OPS | CPU_AND_COMPOSITE_OPS:
            continue
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CUDA"), qualified


EXPECTED_OPS = {
    "elementwise_derivatives", "elementwise_derivatives_backward", "polynomial_derivatives",
    "polynomial_derivatives_backward", "jet_activation", "jet_activation_backward", "jet_activation_first",
    "jet_activation_first_backward", "jet_bilaplacian_extra", "jet_bilaplacian_extra_backward",
    "jet_univariate", "jet_univariate_backward", "network_jet", "weighted_gram",
}
# Ops whose kernel below autograd is CompositeExplicitAutograd (they call the other ops through the dispatcher:
# every backend and Meta), with an Autograd kernel of their own.
COMPOSITE_OPS = {"network_jet"}
# Ops with a CPU kernel of their own and a CompositeExplicitAutograd kernel (ATen ops) for every other device.
CPU_AND_COMPOSITE_OPS = {"weighted_gram"}


def _package_ops() -> list[str]:
    return sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith("hoderiv_ext::"))


def test_every_op_has_cpu_kernel_and_fake_and_autograd():
    """Every op: CPU, Autograd and fake (or Meta) kernels; COMPOSITE_OPS through CompositeExplicitAutograd."""
    assert {name.split("::")[1] for name in _package_ops()} == EXPECTED_OPS
    for qualified in _package_ops():
        name = qualified
        composite = qualified.split("::")[1] in COMPOSITE_OPS
        with_composite = composite or qualified.split("::")[1] in CPU_AND_COMPOSITE_OPS
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CompositeExplicitAutograd") == \
            with_composite, name
        assert not torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CompositeImplicitAutograd"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "Autograd"), name
        if composite:  # one kernel for every backend and Meta
            continue
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CPU"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "Meta") or \
            torch._library.simple_registry.singleton.find(qualified).fake_impl.kernel is not None, name


@pytest.mark.slow
def test_missing_extension_warns_once_and_falls_back_to_autograd():
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["hoderiv_ext._C"] = None  # makes `from hoderiv_ext import _C` raise ImportError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import hoderiv_ext
            import torch
            y, dy, d2y = hoderiv_ext.elementwise_derivatives("tanh", torch.tensor([0.5]), 2)
        messages = [str(w.message) for w in caught if "hoderiv_ext" in str(w.message)]
        assert len(messages) == 1, messages
        assert "falls back to the autograd engine" in messages[0], messages
        assert abs(dy.item() - (1 - torch.tanh(torch.tensor(0.5)).item() ** 2)) < 1e-6
        info = hoderiv_ext.build_info()
        assert info["compiled"] is False and "hoderiv_ext._C" in info["load_error"], info
        try:
            hoderiv_ext.elementwise_derivatives("tanh", torch.tensor([0.5]), 2, backend="kernel")
        except RuntimeError as error:
            assert "not loaded" in str(error)
        else:
            raise AssertionError("kernel backend must refuse without the extension")
        print("fallback ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fallback ok" in result.stdout


def test_kernel_backend_without_extension_is_a_clear_error(monkeypatch):
    import hoderiv_ext.ops.library as extension

    monkeypatch.setattr(extension, "_C", None)
    monkeypatch.setattr(extension, "_LOAD_ERROR", "ImportError: simulated")
    with pytest.raises(RuntimeError, match="compiled extension is not loaded.*simulated"):
        elementwise_derivatives("tanh", torch.ones(3), 2, backend="kernel")
    y, dy = elementwise_derivatives("tanh", torch.ones(3), 1)  # auto still works
    torch.testing.assert_close(dy, 1 - torch.tanh(torch.ones(3)) ** 2)
    assert hoderiv_ext.build_info()["compiled"] is False


def test_the_function_table_is_one_list_that_every_layer_reads():
    """Python's names come from the compiled table; every listed function runs through the kernels and its
    torch implementation, with the parameter count the table states."""
    from hoderiv_ext.core.functions import KERNEL_FUNCTION_NAMES, by_name
    from hoderiv_ext.ops.library import function_table

    table = function_table()
    assert table is not None
    assert tuple(entry["name"] for entry in table) == KERNEL_FUNCTION_NAMES == hoderiv_ext.KERNEL_FUNCTION_NAMES
    for entry in table:
        x = into_domain(entry["name"], torch.linspace(-3, 3, 61, dtype=torch.float64))
        spec = by_name(entry["name"])
        assert len(spec.params) == entry["num_params"] == len(entry["param_names"]), entry
        kernel = hoderiv_ext.elementwise_derivatives(spec, x, 2, backend="kernel")
        autograd = hoderiv_ext.elementwise_derivatives(spec, x, 2, backend="autograd")
        for got, expected in zip(kernel, autograd):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=entry["name"])
    with pytest.raises(RuntimeError, match="takes 2 parameter"):
        torch.ops.hoderiv_ext.elementwise_derivatives(x, "softplus", [1.0], 1)


def test_a_failing_or_missing_extension_falls_back_with_a_clear_reason():
    """Regression: a _C raising anything but ImportError/OSError broke the import; a deleted _C read "circular import"."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys, warnings

        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "hoderiv_ext._C":
                    raise ValueError("a broken build")
                return None

        sys.meta_path.insert(0, Broken())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import hoderiv_ext
        info = hoderiv_ext.build_info()
        assert info["compiled"] is False and "ValueError: a broken build" in info["load_error"], info
        print("broken ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "broken ok" in result.stdout
    missing = textwrap.dedent(
        """
        import importlib.abc, sys

        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "hoderiv_ext._C":
                    raise ModuleNotFoundError("No module named 'hoderiv_ext._C'", name="hoderiv_ext._C")
                return None

        sys.meta_path.insert(0, Missing())
        import hoderiv_ext
        error = hoderiv_ext.build_info()["load_error"]
        assert "circular" not in error and "is not installed" in error, error
        print("missing ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", missing], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "missing ok" in result.stdout
