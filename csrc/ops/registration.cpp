// The one registration of the hoderiv_ext ops in this library: a static
// initialiser that runs when the library is loaded.
//
// Two builds of these sources can end up in one process (the Python module
// hoderiv_ext._C and the CMake library libhoderiv_ext_ops.so, or one library
// loaded from two paths). TORCH_LIBRARY would abort the second load ("Only a
// single TORCH_LIBRARY can be used to register the namespace"), so instead
// the initialiser first asks the dispatcher whether the schemas exist. If
// they do, it registers nothing (the first library's kernels serve the ops),
// warns if that library's schemas differ from these, and records that
// ops_registered_here() is false. Otherwise it creates the torch::Library
// objects (the schemas, the CPU and, when built, CUDA kernels, and the
// forward ops' autograd kernels) and keeps them for the life of the process. An exception while registering is
// recorded (registration_error()) instead of escaping the loader.
#include "ops/registration.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <exception>
#include <memory>
#include <string>

namespace hoderiv {
namespace {

constexpr const char* kNamespace = "hoderiv_ext";

struct Registration {
  bool registered_here = false;
  std::string error;
  std::unique_ptr<torch::Library> schemas, cpu, cuda, autograd, composite;
};

// Never destroyed: the libraries stay registered until the process ends, with
// no exit-time deregistration to order against the dispatcher's own teardown.
Registration& registration() {
  static Registration* const state = new Registration();
  return *state;
}

std::string qualified(const char* schema) { return std::string(kNamespace) + "::" + schema; }

// Another library registered the namespace: warn about every op whose
// schema differs from (or is missing next to) this build's.
void warn_about_different_schemas() {
  c10::Dispatcher& dispatcher = c10::Dispatcher::singleton();
  for (const char* schema : op_schemas()) {
    const c10::FunctionSchema ours = torch::schema(qualified(schema).c_str());
    const auto existing = dispatcher.findSchema({ours.name(), ours.overload_name()});
    if (!existing.has_value()) {
      TORCH_WARN("hoderiv_ext: the ops were registered by another library that lacks ", ours.name(),
                 "; this library's kernels are not used");
    } else if (!(existing->schema() == ours)) {
      TORCH_WARN("hoderiv_ext: the ops were registered by another library with a different schema for ",
                 ours.name(), " (", existing->schema(), ", this library: ", ours,
                 "); this library's kernels are not used");
    }
  }
}

bool register_ops() {
  Registration& state = registration();
  try {
    c10::Dispatcher& dispatcher = c10::Dispatcher::singleton();
    if (dispatcher.findSchema({qualified("elementwise_derivatives"), ""}).has_value()) {
      warn_about_different_schemas();
      return false;
    }
    state.schemas = std::make_unique<torch::Library>(torch::Library::DEF, kNamespace, std::nullopt, __FILE__,
                                                     __LINE__);
    for (const char* schema : op_schemas()) state.schemas->def(schema);
    state.cpu = std::make_unique<torch::Library>(torch::Library::IMPL, kNamespace, c10::DispatchKey::CPU, __FILE__,
                                                 __LINE__);
    register_elementwise_cpu(*state.cpu);
    register_jet_cpu(*state.cpu);
    register_bilaplacian_cpu(*state.cpu);
    register_univariate_cpu(*state.cpu);
    register_weighted_gram_cpu(*state.cpu);
#ifdef HODERIV_WITH_CUDA
    state.cuda = std::make_unique<torch::Library>(torch::Library::IMPL, kNamespace, c10::DispatchKey::CUDA,
                                                  __FILE__, __LINE__);
    register_elementwise_cuda(*state.cuda);
    register_jet_cuda(*state.cuda);
    register_bilaplacian_cuda(*state.cuda);
    register_univariate_cuda(*state.cuda);
#endif
    state.autograd = std::make_unique<torch::Library>(torch::Library::IMPL, kNamespace, c10::DispatchKey::Autograd,
                                                      __FILE__, __LINE__);
    register_autograd(*state.autograd);
    register_network_jet_autograd(*state.autograd);
    state.composite = std::make_unique<torch::Library>(
        torch::Library::IMPL, kNamespace, c10::DispatchKey::CompositeExplicitAutograd, __FILE__, __LINE__);
    register_network_jet(*state.composite);
    register_weighted_gram(*state.composite);
    state.registered_here = true;
  } catch (const std::exception& error) {
    state.error = error.what();
  }
  return state.registered_here;
}

const bool kRegisteredHere = register_ops();

}  // namespace

bool ops_registered_here() { return kRegisteredHere; }

std::string registration_error() { return registration().error; }

}  // namespace hoderiv

// For loaders without the Python module (the CMake library's ctest reads it
// through ctypes): 1 when this library registered the ops, else 0.
extern "C" __attribute__((visibility("default"))) int hoderiv_ext_ops_registered_here() {
  return hoderiv::ops_registered_here() ? 1 : 0;
}
