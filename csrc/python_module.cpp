// The Python module hoderiv_ext._C. Loading it runs the static initialisers
// that register the ops (TORCH_LIBRARY in ops.cpp, TORCH_LIBRARY_IMPL per
// device); pybind11 is used only for this small build_info helper.
#include <torch/extension.h>

#include "hoderiv/derivative_math.h"

#ifndef HODERIV_TORCH_VERSION
#define HODERIV_TORCH_VERSION "unknown"
#endif
#ifndef HODERIV_CUDA_ARCHS
#define HODERIV_CUDA_ARCHS ""
#endif
#ifndef HODERIV_CUDA_VERSION
#define HODERIV_CUDA_VERSION ""
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["cpu_kernels"] = true;
#ifdef HODERIV_WITH_CUDA
  info["cuda_kernels"] = true;
#else
  info["cuda_kernels"] = false;
#endif
  info["cuda_archs"] = std::string(HODERIV_CUDA_ARCHS);
  info["cuda_version_built"] = std::string(HODERIV_CUDA_VERSION);
  info["torch_version_built"] = std::string(HODERIV_TORCH_VERSION);
  info["max_kernel_order"] = hoderiv::math::kMaxOrder;
#ifdef HODERIV_DEBUG
  info["debug"] = true;
#else
  info["debug"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hoderiv_ext compiled kernels (ops live under torch.ops.hoderiv_ext)";
  m.def("build_info", &build_info, "What this build of hoderiv_ext._C contains.");
}
