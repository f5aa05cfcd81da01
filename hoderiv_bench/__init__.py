"""Benchmarks of hoderiv_ext against baselines measured in the same run.

The suite behind ``python -m hoderiv_ext bench`` (one job per module):

  workloads.py    what is computed, at which sizes, by which methods; the float64 reference
  methods.py      input-derivative methods for MLPs (kernel path, autograd engine, nested, torch.func)
  architectures.py  the MLP-like models of --suite architectures (residual, fourier, siren, hardbc)
  operators.py    the methods of --suite operators (weighted, partial, hutchinson, bilaplacian, directional)
  jet_methods.py  torch-jet (optional): its collapsed Taylor mode and operators, vmapped, eager and compiled
  elementwise.py  (y, y', y'') methods, and the older single-function elementwise benchmark
  newton.py       the seeds' parameter-space Newton solve, three ways
  runner.py       check against the reference, then time (interleaved rounds); OOM and failures contained
  memory.py       peak memory per call (CUDA allocator stats; a live-storage dispatch mode on CPU), FLOPs
  report.py       the terminal table, the JSON file, the PNG plot
  environment.py  device, versions, build, date
  progress.py     the progress bar
  cli.py          the command line
  traffic.py      memory traffic counted at the dispatcher (elementwise traffic bound)
"""

import logging
import warnings

# Messages torch prints that a benchmark user cannot act on: importing
# torch.utils.benchmark imports torch.utils.cpp_extension, which logs "No CUDA
# runtime is found" on a machine with a CUDA toolkit but no GPU; torch.func's
# forward mode (the func baseline) loads decompositions through the deprecated
# torch.jit.script.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
# Inductor's own lowerings (compile and jet-compile baselines) call a helper torch has deprecated.
warnings.filterwarnings("ignore", message=r"`torch._prims_common.check` is deprecated", category=FutureWarning)
