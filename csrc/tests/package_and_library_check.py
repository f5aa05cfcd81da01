"""ctest: the Python package hoderiv_ext and the CMake library libhoderiv_ext_ops.so in one process.

Usage: python package_and_library_check.py path/to/libhoderiv_ext_ops.so

Both register the namespace hoderiv_ext. In either order the process must
survive: the package first, then the library -- the library registers
nothing and the package's kernels keep serving; the library first, then the
package -- the package reports (build_info()["load_error"]) that another
library registered the ops and falls back to the autograd engine with one
warning. Each order runs in a child process, so an abort shows as its exit
status. Exits 77 (skipped) when the package is not installed.
"""

import subprocess
import sys

PACKAGE_FIRST = """
import sys, torch, hoderiv_ext
assert hoderiv_ext.build_info()["load_error"] is None, hoderiv_ext.build_info()
torch.ops.load_library(sys.argv[1])
x = torch.linspace(-2, 2, 9, dtype=torch.float64)
y, dy, d2y = hoderiv_ext.elementwise_derivatives("tanh", x, 2, backend="kernel")
assert torch.allclose(dy, 1 - torch.tanh(x) ** 2)
print("package first: ok")
"""

LIBRARY_FIRST = """
import sys, warnings, torch
torch.ops.load_library(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import hoderiv_ext
error = hoderiv_ext.build_info()["load_error"]
assert error is not None and "already registered by another library" in error, error
assert any("already registered" in str(w.message) for w in caught), [str(w.message) for w in caught]
x = torch.linspace(-2, 2, 9, dtype=torch.float64)
y, dy = hoderiv_ext.elementwise_derivatives("tanh", x, 1)  # the autograd engine
assert torch.allclose(dy, 1 - torch.tanh(x) ** 2)
print("library first: ok")
"""


def main() -> int:
    try:
        import hoderiv_ext  # noqa: F401
    except ImportError:
        print("package_and_library: hoderiv_ext is not installed; skipped")
        return 77
    status = 0
    for script in (PACKAGE_FIRST, LIBRARY_FIRST):
        result = subprocess.run([sys.executable, "-c", script, sys.argv[1]], capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            print(f"package_and_library: a child process failed with status {result.returncode}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
