// Typed dispatcher handles of the hoderiv_ext ops, looked up once (on first
// use) and shared by every C++ caller: the autograd kernels (autograd.cpp) and
// the whole-network sweep (network_jet.cpp, network_jet_autograd.cpp). A call
// through a handle goes through the dispatcher, so it lands on the kernel of
// the current dispatch keys (autograd, a backend, a fake or functional mode).
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <tuple>

namespace hoderiv {
namespace handles {

using ElementwiseSignature = at::Tensor(const at::Tensor&, c10::string_view, c10::ArrayRef<double>, int64_t);
using ElementwiseBackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view,
                                                c10::ArrayRef<double>, int64_t);
using JetSignature = at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&, c10::string_view,
                                c10::ArrayRef<double>, int64_t, c10::IntArrayRef, c10::IntArrayRef,
                                c10::IntArrayRef, const c10::optional<at::Tensor>&);
using JetBackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                        c10::string_view, c10::ArrayRef<double>, int64_t, c10::IntArrayRef,
                                        c10::IntArrayRef, c10::IntArrayRef);
using FirstSignature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, c10::ArrayRef<double>,
                                  c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef);
using FirstBackwardSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                  const at::Tensor&, c10::string_view,
                                                                  c10::ArrayRef<double>, c10::IntArrayRef,
                                                                  c10::IntArrayRef, c10::IntArrayRef);
using ExtraSignature = at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&, const at::Tensor&,
                                  c10::string_view, c10::ArrayRef<double>, int64_t, c10::IntArrayRef);
using ExtraBackwardSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                  const c10::optional<at::Tensor>&,
                                                                  const at::Tensor&, c10::string_view,
                                                                  c10::ArrayRef<double>, int64_t, c10::IntArrayRef);
using UnivariateSignature = at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&, c10::string_view,
                                       c10::ArrayRef<double>, int64_t, int64_t);
using NetworkJetSignature = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, at::TensorList, const c10::List<c10::optional<at::Tensor>>&, c10::string_view,
    c10::ArrayRef<double>, c10::IntArrayRef, int64_t, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef);
using UnivariateBackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                               c10::string_view, c10::ArrayRef<double>, int64_t, int64_t);

template <typename Signature>
c10::TypedOperatorHandle<Signature> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// One handle per op; `inline` makes the static one object for the whole library.
#define HODERIV_OP_HANDLE(function, signature, name)                       \
  inline const c10::TypedOperatorHandle<signature>& function() {           \
    static const auto op = typed_op<signature>("hoderiv_ext::" name);      \
    return op;                                                             \
  }

HODERIV_OP_HANDLE(elementwise_op, ElementwiseSignature, "elementwise_derivatives")
HODERIV_OP_HANDLE(elementwise_backward_op, ElementwiseBackwardSignature, "elementwise_derivatives_backward")
HODERIV_OP_HANDLE(jet_op, JetSignature, "jet_activation")
HODERIV_OP_HANDLE(jet_backward_op, JetBackwardSignature, "jet_activation_backward")
HODERIV_OP_HANDLE(first_op, FirstSignature, "jet_activation_first")
HODERIV_OP_HANDLE(first_backward_op, FirstBackwardSignature, "jet_activation_first_backward")
HODERIV_OP_HANDLE(extra_op, ExtraSignature, "jet_bilaplacian_extra")
HODERIV_OP_HANDLE(extra_backward_op, ExtraBackwardSignature, "jet_bilaplacian_extra_backward")
HODERIV_OP_HANDLE(univariate_op, UnivariateSignature, "jet_univariate")
HODERIV_OP_HANDLE(univariate_backward_op, UnivariateBackwardSignature, "jet_univariate_backward")
HODERIV_OP_HANDLE(network_jet_op, NetworkJetSignature, "network_jet")

#undef HODERIV_OP_HANDLE

}  // namespace handles
}  // namespace hoderiv
