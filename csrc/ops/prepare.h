// The host half of every op call, shared by the CPU and CUDA wrappers: every
// argument checked (before any arithmetic on it and before the empty-input
// return), the operands made contiguous, the outputs allocated on the
// operands' device and the function parsed. Each device then only runs its
// kernels. Nothing here synchronises with a device or reads device memory.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <vector>

#include "hoderiv/jet_math.h"
#include "ops/functions.h"

namespace hoderiv {

namespace bilaplacian {
struct ExtraLayout;  // hoderiv/bilaplacian_math.h (included by the files that use it)
}
namespace univariate {
struct Layout;  // hoderiv/univariate_math.h (included by the files that use it)
}

// ----- elementwise_derivatives*, polynomial_derivatives* -----

// Checks: x (and grad) float32/float64 of one dtype on one device (the first
// tensor argument's); order in [0, kMaxOrder]; for a backward shift in
// [0, kMaxOrder], grad of shape (m + 1, *x.shape) with m in [0, kMaxOrder]
// and m + shift <= kMaxOrder; coefficients 1-D, non-empty. When n == 0 the
// wrapper returns `out` as is.
struct ElementwiseCall {
  at::Tensor input;    // x, contiguous
  at::Tensor weights;  // backward: grad (m + 1, *x.shape), plane k weighs y^(k + shift)
  at::Tensor coefficients;  // polynomial ops: ascending powers, contiguous
  at::Tensor table;         // polynomial ops: (highest_order + 1, num_coefficients), for the device to fill
                            // with math::polynomial_table_entry
  at::Tensor out;           // forward: (order + 1, *x.shape); backward: x's shape
  int64_t n = 0;            // elements of x
  int64_t order = 0;        // forward: the highest order; backward: m
  int64_t shift = 0;        // backward only
  ParsedFunction parsed{};  // elementwise_derivatives*: the function and its parameters

  // The highest derivative order the kernels need: order (forward) or m + shift.
  int64_t highest_order() const { return order + shift; }
};

ElementwiseCall prepare_elementwise(const at::Tensor& x, c10::string_view function, c10::ArrayRef<double> params,
                                    int64_t order);
ElementwiseCall prepare_elementwise_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view function,
                                             c10::ArrayRef<double> params, int64_t shift);
ElementwiseCall prepare_polynomial(const at::Tensor& x, const at::Tensor& coefficients, int64_t order);
ElementwiseCall prepare_polynomial_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& coefficients, int64_t shift);

// ----- jet_activation* -----

// The validated index lists of a jet: t tangents, pairs with entries in
// [0, t), a collapsed list of distinct entries in [0, t). Host memory; the
// layout's pointers point into the vectors.
struct JetIndices {
  int64_t num_tangents = 0;
  std::vector<jet::Index> pair_i, pair_j, collapsed;

  jet::SlotLayout layout() const;
};

// Checks, all before the empty-input return: the jet (N, S, m) with
// S = 1 + t + p + c (c = 1 when collapsed is non-empty); num_tangents in
// [0, 2^31 - 1] (the first layer's t = weight.size(1) likewise); pair_i and
// pair_j of one length with entries in [0, t); collapsed entries in [0, t)
// and distinct; the bias (m,); the backward's grad of the jet's shape; the
// first layer's preactivation (N, m), weight (m, t) and grad (N, S, m); every
// tensor float32/float64 of one dtype on the first tensor argument's device;
// the function and its parameters. The steps return `out` as is when it is
// empty; the first layer's backward returns (out, grad_weight) as they are
// when m = 0, and for N = 0 still runs the weight gradient (zeros).
struct JetCall {
  at::Tensor input;     // the jet (N, S, m), or the first layer's preactivation (N, m)
  at::Tensor bias;      // (m), or undefined
  at::Tensor weight_t;  // first layer: the weight's transpose (t, m); row k holds T_k for every unit
  at::Tensor grad;      // backward: the output jet's gradient (N, S, m)
  at::Tensor residual;  // forward step: a jet (N, S, m) added to the output, or undefined
  at::Tensor out;       // the result: a jet (N, S, m), the gradient with respect to the input jet, or
                        // (first layer's backward) the gradient with respect to the preactivation (N, m)
  // First layer's backward only:
  at::Tensor grad_weight;  // (m, t), every entry written by the device (jet::first_weight_grad_entry)
  at::Tensor sums;         // per-chunk partial sums (chunks, t + p + c, m), uninitialised: each chunk's
                           // writer zeroes it
  int64_t samples_per_chunk = 0;
  int64_t chunks = 0;
  int64_t n = 0, slots = 0, m = 0;
  JetIndices indices;
  ParsedFunction parsed{};
};

// The forward step; a residual, when given, is a jet of the input jet's shape,
// dtype and device that the kernels add to the step's output.
JetCall prepare_jet_activation(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                               c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                               const c10::optional<at::Tensor>& residual);
JetCall prepare_jet_activation_backward(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t num_tangents,
                                        c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                        c10::IntArrayRef collapsed);
JetCall prepare_jet_activation_first(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed);

// The first layer's backward. When m > 0 the device then picks its chunk
// size (which must not depend on the number of threads) and calls
// allocate_chunk_sums; its kernels write call.out (the gradient with respect
// to the preactivation) and chunk q's partial sums into sums[q]
// (jet::first_backward_columns), then every entry of grad_weight
// (jet::first_weight_grad_entry; zeros when N = 0).
JetCall prepare_jet_activation_first_backward(const at::Tensor& grad, const at::Tensor& preactivation,
                                              const at::Tensor& weight, c10::string_view function,
                                              c10::ArrayRef<double> params, c10::IntArrayRef pair_i,
                                              c10::IntArrayRef pair_j, c10::IntArrayRef collapsed);
// Allocates sums (chunks, t + p + c, m), chunks = ceil(N / samples_per_chunk),
// uninitialised: the kernel that fills a chunk zeroes it first.
void allocate_chunk_sums(JetCall& call, int64_t samples_per_chunk);

// ----- jet_bilaplacian_extra* -----

// Checks, all before the empty-input return: jet (N, S, m) with
// S = 1 + t + p(p+1)/2; extra (N, p + 1, m); the backward's grad (N, p + 1, m);
// bias (m,); num_tangents in [0, 2^31 - 1]; dims non-empty (p >= 1) with
// distinct entries in [0, t); every tensor float32/float64 of one dtype on
// the first tensor argument's device; the function and its parameters. The
// jet and extra are used as they are when their slots and units are dense
// (slot stride m, unit stride 1: a narrowed view of a wider jet is not
// copied), else made contiguous. The steps return their outputs as they are
// when empty (N = 0 or m = 0).
struct BilaplacianExtraCall {
  at::Tensor jet;    // the main jet (N, S, m): slot stride m, unit stride 1
  at::Tensor extra;  // the extra jet (N, p + 1, m): slot stride m, unit stride 1
  at::Tensor bias;   // (m), or undefined
  at::Tensor grad;   // backward: the output extra jet's gradient, contiguous (N, p + 1, m)
  at::Tensor out;    // forward: the extra jet of phi(a); backward: the gradient w.r.t. extra; contiguous
  at::Tensor grad_jet;  // backward: the gradient w.r.t. the main jet, contiguous (N, S, m)
  int64_t n = 0, m = 0;
  int64_t jet_sample_stride = 0, extra_sample_stride = 0;
  int64_t num_tangents = 0;
  std::vector<jet::Index> dims;
  ParsedFunction parsed{};

  bilaplacian::ExtraLayout layout() const;
};

BilaplacianExtraCall prepare_jet_bilaplacian_extra(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                                   const at::Tensor& extra, c10::string_view function,
                                                   c10::ArrayRef<double> params, int64_t num_tangents,
                                                   c10::IntArrayRef dims);
BilaplacianExtraCall prepare_jet_bilaplacian_extra_backward(const at::Tensor& grad, const at::Tensor& jet,
                                                            const c10::optional<at::Tensor>& bias,
                                                            const at::Tensor& extra, c10::string_view function,
                                                            c10::ArrayRef<double> params, int64_t num_tangents,
                                                            c10::IntArrayRef dims);

// ----- jet_univariate* -----

// Checks, all before the empty-input return: order in [1, kMaxOrder] (the
// backward: [1, kMaxOrder - 1], it needs phi^(order + 1)), checked before
// any arithmetic on it; jet (N, S, m) with S = 1 + t + R * order for some
// R >= 0; num_tangents in [0, S - 1]; the backward's grad of the jet's
// shape; bias (m,); every tensor float32/float64 of one dtype on the first
// tensor argument's device; the function and its parameters. The jet is used
// as it is when its slots and units are dense (slot stride m, unit stride 1:
// a narrowed view of a wider jet is not copied), else made contiguous. The
// steps return `out` as it is when empty (N = 0 or m = 0).
struct UnivariateCall {
  at::Tensor jet;   // (N, S, m): slot stride m, unit stride 1
  at::Tensor bias;  // (m), or undefined
  at::Tensor grad;  // backward: the output jet's gradient, contiguous (N, S, m)
  at::Tensor out;   // forward: the jet of phi(a); backward: the gradient w.r.t. the jet; contiguous (N, S, m)
  int64_t n = 0, m = 0;
  int64_t jet_sample_stride = 0;
  int64_t num_tangents = 0, num_directions = 0, order = 0;
  ParsedFunction parsed{};

  univariate::Layout layout() const;
};

UnivariateCall prepare_jet_univariate(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                      c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                                      int64_t order);
UnivariateCall prepare_jet_univariate_backward(const at::Tensor& grad, const at::Tensor& jet,
                                               const c10::optional<at::Tensor>& bias, c10::string_view function,
                                               c10::ArrayRef<double> params, int64_t num_tangents, int64_t order);

}  // namespace hoderiv
