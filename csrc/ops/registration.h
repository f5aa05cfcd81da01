// Registration of the ops with the dispatcher (csrc/ops/registration.cpp):
// one static initialiser per library defines the schemas (schemas.cpp) and
// registers the kernels of each device and the forward ops' autograd kernels
// through the functions below, unless
// the namespace hoderiv_ext is already registered in this process (by
// another build of these sources: the Python module hoderiv_ext._C or the
// CMake library libhoderiv_ext_ops.so), in which case it registers nothing.
#pragma once

#include <torch/library.h>

#include <string>

namespace hoderiv {

// The op schemas, "name(args) -> returns", without the namespace.
c10::ArrayRef<const char*> op_schemas();

// Per-device kernels, each registering its own ops on `library` (an IMPL
// library for its dispatch key).
void register_elementwise_cpu(torch::Library& library);  // csrc/cpu/elementwise_cpu.cpp
void register_jet_cpu(torch::Library& library);          // csrc/cpu/jet_cpu.cpp
void register_bilaplacian_cpu(torch::Library& library);  // csrc/cpu/bilaplacian_cpu.cpp
void register_univariate_cpu(torch::Library& library);   // csrc/cpu/univariate_cpu.cpp
void register_weighted_gram_cpu(torch::Library& library);  // csrc/cpu/weighted_gram_cpu.cpp
#ifdef HODERIV_WITH_CUDA
void register_elementwise_cuda(torch::Library& library);  // csrc/cuda/elementwise_cuda.cu
void register_jet_cuda(torch::Library& library);          // csrc/cuda/jet_cuda.cu
void register_bilaplacian_cuda(torch::Library& library);  // csrc/cuda/bilaplacian_cuda.cu
void register_univariate_cuda(torch::Library& library);   // csrc/cuda/univariate_cuda.cu
#endif
// The autograd kernels (dispatch key Autograd) of the forward ops
// elementwise_derivatives, jet_activation, jet_activation_first,
// jet_bilaplacian_extra and jet_univariate (csrc/ops/autograd.cpp). The backward ops' autograd formulas and every
// op's fake kernel are registered by the Python package
// (hoderiv_ext/ops/formulas.py, fake.py).
void register_autograd(torch::Library& library);
// network_jet's kernel below autograd (CompositeExplicitAutograd, any device; csrc/ops/network_jet.cpp) and its
// autograd kernel, the sweep as one autograd node (csrc/ops/network_jet_autograd.cpp).
void register_network_jet(torch::Library& library);
void register_network_jet_autograd(torch::Library& library);
// weighted_gram's kernel for the devices without one of their own (CompositeExplicitAutograd, ATen ops;
// csrc/ops/weighted_gram.cpp).
void register_weighted_gram(torch::Library& library);

// True when this library registered the ops; false when another library had
// registered the namespace first (or registration failed: see
// registration_error()).
bool ops_registered_here();

// Empty, or why registering raised (the exception's message).
std::string registration_error();

}  // namespace hoderiv
