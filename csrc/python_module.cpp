// The Python module hoderiv_ext._C. Loading it runs the static initialiser
// that registers the ops (csrc/ops/registration.cpp); pybind11 serves only
// the two helpers below.
#include <torch/extension.h>

#include "hoderiv/derivative_math.h"
#include "ops/functions.h"
#include "ops/registration.h"

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
  // False when another library (e.g. the CMake build libhoderiv_ext_ops.so)
  // had registered the namespace hoderiv_ext first: its kernels serve the ops.
  info["ops_registered_here"] = hoderiv::ops_registered_here();
  info["registration_error"] = hoderiv::registration_error();
#ifdef HODERIV_DEBUG
  info["debug"] = true;
#else
  info["debug"] = false;
#endif
  return info;
}

// The elementwise functions the kernels serve (hoderiv/functions.def), in
// table order: [{"name": str, "num_params": int, "param_names": [str]}].
pybind11::list function_table() {
  pybind11::list table;
  for (const hoderiv::FunctionInfo& entry : hoderiv::function_table()) {
    pybind11::dict row;
    row["name"] = entry.name;
    row["num_params"] = entry.num_params;
    pybind11::list names;
    for (const std::string& name : entry.param_names) names.append(name);
    row["param_names"] = names;
    table.append(row);
  }
  return table;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hoderiv_ext compiled kernels (ops live under torch.ops.hoderiv_ext)";
  m.def("build_info", &build_info, "What this build of hoderiv_ext._C contains.");
  m.def("function_table", &function_table,
        "The elementwise functions the kernels serve, in table order: dicts with name, num_params, param_names.");
}
