"""Build script for hoderiv_ext and its compiled extension hoderiv_ext._C.

Install with ``pip install --no-build-isolation .`` (the extension is built
against the torch already installed). Switches, all environment variables:

  FORCE_CUDA=1            build the CUDA kernels even if torch sees no GPU
                          (needs a CUDA build of torch and a CUDA toolkit).
  HODERIV_CPU_ONLY=1      never build the CUDA kernels (also FORCE_ONLY_CPU=1).
  TORCH_CUDA_ARCH_LIST    CUDA architectures, e.g. "9.0" or "8.0;9.0+PTX"; when
                          set, the CUDA kernels are built for exactly these
                          (if torch is a CUDA build and nvcc is found).
                          Default: the visible GPUs' archs; with no GPU visible
                          no CUDA kernels (CPU only, one line says so), or with
                          FORCE_CUDA=1 "7.5;8.0;9.0;10.0;12.0+PTX".
  HODERIV_DEBUG=1         -O0 -g host code, -G device code, no -DNDEBUG.
  CUDA_HOME               the CUDA toolkit; default: $CUDA_PATH, then
                          /usr/local/cuda, then the directory above `nvcc`.
  MAX_JOBS                parallel compile jobs (ninja).

CUDA kernels are built by default when torch is a CUDA build, a toolkit
(nvcc) is found and a GPU is visible (or FORCE_CUDA / TORCH_CUDA_ARCH_LIST ask
for them). Headers that torch's CUDA headers include (cusparse.h,
cublas_v2.h, ...) are also looked up in pip-installed NVIDIA packages
(nvidia/cu13/include, nvidia/*/include) when the toolkit lacks them.

Sources are found by glob: every csrc/**/*.cpp except csrc/tests/, plus
csrc/**/*.cu for a CUDA build. Objects are kept under build/ (one folder per
Python and torch version), so rebuilding an unchanged tree -- a second
`pip install --no-build-isolation -e .` included -- compiles nothing; ninja
recompiles what a changed source, header or flag affects.

The built distribution requires the torch minor version it was compiled
against (torch==X.Y.*): the compiled extension does not load into another.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import sysconfig
from collections import Counter
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# With FORCE_CUDA=1 and no GPU visible: a broad list (slow: every .cu compiles once per arch).
DEFAULT_ARCH_LIST_WITHOUT_GPU = "7.5;8.0;9.0;10.0;12.0+PTX"
# torch minor versions CI builds and tests against (README "Set-up").
TESTED_TORCH = ("2.13", "2.14")
# Headers torch's ATen/cuda headers include that a bare toolkit may lack.
CUDA_LIBRARY_HEADERS = ("cusparse.h", "cublas_v2.h", "cublasLt.h", "cusolverDn.h", "curand.h")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _find_cuda_home() -> str | None:
    """The CUDA toolkit root: one that really holds bin/nvcc and include/."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        # Follow wrappers: /usr/local/bin/nvcc may be a script that execs the
        # real one, so its parent is not a toolkit root.
        candidates.append(str(Path(os.path.realpath(nvcc)).parent.parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "nvcc").exists() and (Path(candidate) / "include").is_dir():
            return str(Path(candidate).resolve())
    return None


# torch.utils.cpp_extension reads CUDA_HOME when it is imported; its own guess
# (the parent of the first `nvcc` on PATH) is wrong where nvcc is a wrapper.
_CUDA_HOME = _find_cuda_home()
if _CUDA_HOME and not os.environ.get("CUDA_HOME"):
    os.environ["CUDA_HOME"] = _CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _pip_cuda_include_dirs(cuda_home: str) -> list[str]:
    """Include dirs of pip-installed NVIDIA packages holding headers the toolkit lacks."""
    toolkit_include = Path(cuda_home) / "include"
    missing = [h for h in CUDA_LIBRARY_HEADERS if not (toolkit_include / h).exists()]
    if not missing:
        return []
    dirs: list[str] = []
    for site_dir in sys.path:
        if not site_dir or not os.path.isdir(os.path.join(site_dir, "nvidia")):
            continue
        for include_dir in sorted(glob.glob(os.path.join(site_dir, "nvidia", "*", "include"))):
            if any(os.path.exists(os.path.join(include_dir, h)) for h in missing) and include_dir not in dirs:
                dirs.append(include_dir)
    still_missing = [h for h in missing if not any(os.path.exists(os.path.join(d, h)) for d in dirs)]
    if still_missing:
        print(f"hoderiv_ext setup: warning: CUDA headers not found anywhere: {still_missing}", file=sys.stderr)
    return dirs


def _visible_gpu_archs() -> list[str]:
    try:
        count = torch.cuda.device_count()
    except Exception:  # pragma: no cover - driver problems
        count = 0
    return sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(count)})


def _explicit_arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST as the user set it ("" when unset; "native" means the visible GPUs)."""
    value = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    return "" if value == "native" else value


def _note(message: str) -> None:
    print(f"hoderiv_ext setup: {message}", file=sys.stderr)


def _want_cuda() -> bool:
    """Whether to build the CUDA kernels (see the module docstring for the rules)."""
    if _flag("HODERIV_CPU_ONLY") or _flag("FORCE_ONLY_CPU"):
        return False
    force = _flag("FORCE_CUDA")
    archs = _explicit_arch_list()
    if torch.version.cuda is None:
        if force:
            raise RuntimeError("FORCE_CUDA=1 but the installed torch is a CPU-only build")
        if archs:
            _note(f"TORCH_CUDA_ARCH_LIST={archs} ignored: torch {torch.__version__} is a CPU-only build; CPU kernels only")
        return False
    if _CUDA_HOME is None:
        if force:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        if archs or _visible_gpu_archs():
            _note("no CUDA toolkit (nvcc) found, set CUDA_HOME for the CUDA kernels; CPU kernels only")
        return False
    if force or archs or _visible_gpu_archs():
        return True
    # Without a GPU the CUDA kernels cannot run here, and a broad arch list
    # costs many minutes per .cu file: build them only when asked.
    _note("no GPU visible: CPU kernels only; for the CUDA kernels set TORCH_CUDA_ARCH_LIST=9.0 "
          "(your GPU's compute capability) or FORCE_CUDA=1 (archs " + DEFAULT_ARCH_LIST_WITHOUT_GPU + ")")
    return False


def _sources(with_cuda: bool) -> list[str]:
    """Every csrc/**/*.cpp except csrc/tests/ (the ctest programs), plus csrc/**/*.cu for CUDA."""
    csrc = ROOT / "csrc"
    patterns = ("*.cpp", "*.cu") if with_cuda else ("*.cpp",)
    found = sorted(
        path for pattern in patterns for path in csrc.rglob(pattern) if path.relative_to(csrc).parts[0] != "tests"
    )
    if not found:
        raise RuntimeError(f"no C++ sources under {csrc} (an sdist built without MANIFEST.in?)")
    # Objects are named after the source without its suffix: a.cpp and a.cu in
    # one folder would overwrite each other's object.
    clashes = [str(stem) for stem, count in Counter(p.with_suffix("") for p in found).items() if count > 1]
    if clashes:
        raise RuntimeError(f"sources that would share one object file (rename one): {clashes}")
    return [str(path.relative_to(ROOT)) for path in found]


def _extensions():
    debug = _flag("HODERIV_DEBUG")
    with_cuda = _want_cuda()
    csrc = ROOT / "csrc"
    sources = _sources(with_cuda)
    define_macros = [("HODERIV_TORCH_VERSION", f'"{torch.__version__}"')]
    # -fno-trapping-math: lets GCC if-convert (vectorise) the branch-free
    # derivative loops; nothing here reads floating-point exception flags.
    cxx_flags = ["-O0", "-g"] if debug else ["-O3", "-fno-trapping-math"]
    link_flags: list[str] = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is header-inlined and runs serially unless the
        # extension itself is compiled with OpenMP (torch's Linux wheels use
        # OpenMP and ship libgomp.so.1, which the extension then shares).
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    nvcc_flags = ["-O0", "-G", "-g"] if debug else ["-O3", "-lineinfo"]
    include_dirs = [str(csrc / "include"), str(csrc)]
    if debug:
        define_macros.append(("HODERIV_DEBUG", "1"))
        cxx_flags.append("-UNDEBUG")

    if not with_cuda:
        return [
            CppExtension(
                "hoderiv_ext._C",
                sources,
                include_dirs=include_dirs,
                define_macros=define_macros,
                extra_compile_args={"cxx": cxx_flags},
                extra_link_args=link_flags,
            )
        ]

    arch_list = _explicit_arch_list()
    if not arch_list:
        visible = _visible_gpu_archs()
        arch_list = ";".join(visible[:-1] + [visible[-1] + "+PTX"]) if visible else DEFAULT_ARCH_LIST_WITHOUT_GPU
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    print(f"hoderiv_ext setup: CUDA kernels for archs {arch_list} (CUDA_HOME={_CUDA_HOME})", file=sys.stderr)
    define_macros += [
        ("HODERIV_WITH_CUDA", "1"),
        ("HODERIV_CUDA_ARCHS", f'"{arch_list}"'),
        ("HODERIV_CUDA_VERSION", f'"{torch.version.cuda}"'),
    ]
    # Searched after every -I and system directory, so the toolkit's own
    # headers always win over the pip packages' copies.
    for include_dir in _pip_cuda_include_dirs(_CUDA_HOME):
        cxx_flags += ["-idirafter", include_dir]
        nvcc_flags.append(f"-Xcompiler=-idirafter,{include_dir}")  # nvcc preprocesses with the host compiler
    return [
        CUDAExtension(
            "hoderiv_ext._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    ]


class BuildExtensionInTree(BuildExtension.with_options(use_ninja=True)):
    """torch's ninja build_ext with its objects in <source tree>/build/.

    pip's editable install (setuptools' editable_wheel) points build_temp at a
    fresh temporary folder on every run, so ninja never saw its previous
    objects and each `pip install -e .` recompiled everything. Here the
    objects and build.ninja stay in one folder per platform, Python and torch
    version: ninja then recompiles only what a changed source, header (its
    depfiles) or command line affects, and an unchanged tree only relinks.
    An explicit --build-temp is honoured.
    """

    def finalize_options(self) -> None:
        chosen = self.build_temp is not None or "build_temp" in self.distribution.get_option_dict("build")
        super().finalize_options()
        if not chosen:
            tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}-torch{torch.__version__}"
            self.build_temp = str(ROOT / "build" / ("temp." + re.sub(r"[^A-Za-z0-9._-]", "_", tag)))


def _install_requires() -> list[str]:
    """torch and numpy; a build needs the torch minor version it was compiled against.

    The extension's C++ ABI is torch's: a wheel (or an install) built against
    torch X.Y does not load into another torch, so it requires torch==X.Y.*.
    The sdist itself builds against any tested torch, so its metadata says so.
    """
    if "sdist" in sys.argv[1:]:
        return [f"torch>={TESTED_TORCH[0]}", "numpy"]
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if match is None:  # pragma: no cover - a torch without a version
        return ["torch", "numpy"]
    built = f"{match.group(1)}.{match.group(2)}"
    if built not in TESTED_TORCH:
        _note(f"torch {torch.__version__} is untested (CI tests torch {' and '.join(TESTED_TORCH)})")
    return [f"torch=={built}.*", "numpy"]


setup(
    packages=find_packages(include=["hoderiv_ext", "hoderiv_ext.*", "hoderiv_bench", "hoderiv_bench.*"]),
    ext_modules=_extensions(),
    install_requires=_install_requires(),
    cmdclass={"build_ext": BuildExtensionInTree},
)
