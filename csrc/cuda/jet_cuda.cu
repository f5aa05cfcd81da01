// CUDA implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h,
// shared with the CPU kernels; checks: ops.cpp). One thread per column (sample n,
// unit j); consecutive threads take consecutive units, so every slot's reads and
// writes are coalesced.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "hoderiv/jet_math.h"
#include "launch.cuh"
#include "ops.h"

namespace hoderiv {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void jet_forward_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ bias,
                                   scalar_t* __restrict__ out, int64_t n, int64_t slots, int64_t m,
                                   jet::SlotLayout layout, math::Function function, math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    const int64_t sample = c / m, j = c - sample * m;
    const int64_t offset = sample * slots * m + j;
    scalar_t phi[3];
    jet::activation_derivatives<scalar_t, 2>(in + offset, bias ? bias + j : nullptr, 1, function, params, phi);
    jet::forward_columns<scalar_t>(in + offset, out + offset, m, 1, phi, layout);
  }
}

template <typename scalar_t>
__global__ void jet_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ in,
                                    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_in, int64_t n,
                                    int64_t slots, int64_t m, jet::SlotLayout layout, math::Function function,
                                    math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    const int64_t sample = c / m, j = c - sample * m;
    const int64_t offset = sample * slots * m + j;
    scalar_t phi[4];
    jet::activation_derivatives<scalar_t, 3>(in + offset, bias ? bias + j : nullptr, 1, function, params, phi);
    jet::backward_columns<scalar_t>(grad_out + offset, in + offset, grad_in + offset, m, 1, phi, layout);
  }
}

// weight_t: the weight's transpose (d, m), so T_i of unit j is weight_t[i * m + j].
template <typename scalar_t>
__global__ void jet_first_kernel(const scalar_t* __restrict__ pre, const scalar_t* __restrict__ weight_t,
                                 scalar_t* __restrict__ out, int64_t n, int64_t slots, int64_t m,
                                 jet::SlotLayout layout, math::Function function, math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    const int64_t sample = c / m, j = c - sample * m;
    scalar_t phi[3];
    jet::activation_derivatives<scalar_t, 2>(pre + c, nullptr, 1, function, params, phi);
    jet::first_forward_columns<scalar_t>(weight_t + j, m, out + sample * slots * m + j, m, 1, phi, layout);
  }
}

jet::SlotLayout layout_of(const at::Tensor& pair_i, const at::Tensor& pair_j, int64_t num_inputs, bool collapsed,
                          int64_t num_second) {
  return jet::SlotLayout{num_inputs, num_second, collapsed, pair_i.const_data_ptr<int64_t>(),
                         pair_j.const_data_ptr<int64_t>()};
}

at::Tensor jet_activation_cuda(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                               const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_bias(bias, jet);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const c10::cuda::CUDAGuard device_guard(jet.device());
  const at::Tensor input = jet.contiguous();
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.size(0), slots = input.size(1), m = input.size(2);
  if (out.numel() == 0) return out;
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const jet::SlotLayout layout = layout_of(pi, pj, num_inputs, collapsed, num_second);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "jet_activation_cuda", [&] {
    jet_forward_kernel<scalar_t><<<grid_size_for(n * m), kThreadsPerBlock, 0, stream>>>(
        input.const_data_ptr<scalar_t>(), bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr,
        out.mutable_data_ptr<scalar_t>(), n, slots, m, layout, parsed.function, parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor jet_activation_backward_cuda(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                        const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_jet_grad(grad, jet);
  check_bias(bias, jet);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const c10::cuda::CUDAGuard device_guard(jet.device());
  const at::Tensor input = jet.contiguous();
  const at::Tensor grad_out = grad.contiguous();
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  at::Tensor grad_in = at::empty_like(input);
  const int64_t n = input.size(0), slots = input.size(1), m = input.size(2);
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const jet::SlotLayout layout = layout_of(pi, pj, num_inputs, collapsed, num_second);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "jet_activation_backward_cuda", [&] {
    jet_backward_kernel<scalar_t><<<grid_size_for(n * m), kThreadsPerBlock, 0, stream>>>(
        grad_out.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
        bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr, grad_in.mutable_data_ptr<scalar_t>(), n,
        slots, m, layout, parsed.function, parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_in;
}

at::Tensor jet_activation_first_cuda(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  const std::vector<int64_t> out_shape = check_first_layer(preactivation, weight, pair_i, collapsed);
  const c10::cuda::CUDAGuard device_guard(preactivation.device());
  at::Tensor out = at::empty(out_shape, preactivation.options());
  const int64_t n = out_shape[0], m = out_shape[2], d = weight.size(1);
  const int64_t num_second = check_jet_layout(out, "the output jet", pair_i, pair_j, d, collapsed);
  if (out.numel() == 0) return out;
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor pre = preactivation.contiguous();
  const at::Tensor weight_t = weight.t().contiguous();  // (d, m)
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  const jet::SlotLayout layout = layout_of(pi, pj, d, collapsed, num_second);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "jet_activation_first_cuda", [&] {
    jet_first_kernel<scalar_t><<<grid_size_for(n * m), kThreadsPerBlock, 0, stream>>>(
        pre.const_data_ptr<scalar_t>(), weight_t.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n,
        out.size(1), m, layout, parsed.function, parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CUDA, m) {
  m.impl("jet_activation", &hoderiv::cuda::jet_activation_cuda);
  m.impl("jet_activation_backward", &hoderiv::cuda::jet_activation_backward_cuda);
  m.impl("jet_activation_first", &hoderiv::cuda::jet_activation_first_cuda);
}
