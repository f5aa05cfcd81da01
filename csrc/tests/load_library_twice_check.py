"""ctest: the op library loaded from two paths in one process.

Usage: python load_library_twice_check.py path/to/libhoderiv_ext_ops.so

A copy of the library at a second path is a second library to the loader: its
static initialiser runs again. It must find the ops registered, register
nothing (TORCH_LIBRARY would abort the process here) and leave the first
library's kernels serving the ops. The loads run in a child process, so an
abort shows as its exit status, and the child's stderr must hold no warning
about differing schemas.
"""

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile


def child(first: str, second: str) -> None:
    import torch

    torch.ops.load_library(first)
    assert ctypes.CDLL(first).hoderiv_ext_ops_registered_here() == 1, "the first load must register the ops"
    torch.ops.load_library(second)
    assert ctypes.CDLL(second).hoderiv_ext_ops_registered_here() == 0, "the second load must register nothing"
    ops = torch.ops.hoderiv_ext
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    y, dy = ops.elementwise_derivatives(x, "tanh", [], 1)
    assert torch.allclose(dy, 1 - torch.tanh(x) ** 2, rtol=1e-14, atol=1e-15)
    # A jet step: t = 2 tangents, one pair (0, 1), collapsed over both.
    jet = torch.randn(3, 1 + 2 + 1 + 1, 4, dtype=torch.float64)
    out = ops.jet_activation(jet, None, "sin", [], 2, [0], [1], [0, 1])
    a = jet[:, 0]
    t0, t1 = jet[:, 1], jet[:, 2]
    expected_pair = torch.cos(a) * jet[:, 3] - torch.sin(a) * t0 * t1
    assert torch.allclose(out[:, 3], expected_pair, rtol=1e-13, atol=1e-14)
    print("load_library_twice: ok")


def main() -> int:
    library = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as directory:
        copy = os.path.join(directory, "libhoderiv_ext_ops_copy.so")
        shutil.copy(library, copy)
        result = subprocess.run([sys.executable, __file__, "--child", library, copy], capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        print(f"load_library_twice: the child process failed with status {result.returncode}", file=sys.stderr)
        return 1
    if "different schema" in result.stderr or "lacks" in result.stderr:
        print("load_library_twice: unexpected schema warning", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
