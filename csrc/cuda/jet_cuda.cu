// CUDA implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h,
// shared with the CPU kernels; checks and operands: prepare_* in ops.cpp). One
// thread per column (sample n, unit j); consecutive threads take consecutive
// units, so every slot's reads and writes are coalesced.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "hoderiv/jet_math.h"
#include "launch.cuh"
#include "ops.h"

namespace hoderiv {
namespace cuda {
namespace {

// Grid-stride loops over the n * m columns; each column's work is a shared
// function of jet_math.h (tested on the host by csrc/tests/test_jet_math.cpp).
template <typename scalar_t>
__global__ void jet_forward_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ bias,
                                   scalar_t* __restrict__ out, int64_t n, int64_t slots, int64_t m,
                                   jet::SlotLayout layout, math::Function function, math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    jet::forward_column<scalar_t>(in, bias, out, c, slots, m, layout, function, params);
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
    jet::backward_column<scalar_t>(grad_out, in, bias, grad_in, c, slots, m, layout, function, params);
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
    jet::first_forward_column<scalar_t>(pre, weight_t, out, c, slots, m, layout, function, params);
  }
}

// First layer's backward: thread (chunk, unit) runs the chunk's samples for
// its unit and alone writes its column of the chunk's partial sums.
template <typename scalar_t>
__global__ void jet_first_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ pre,
                                          const scalar_t* __restrict__ weight_t,
                                          const scalar_t* __restrict__ pair_products,
                                          scalar_t* __restrict__ grad_a, scalar_t* __restrict__ sums, int64_t n,
                                          int64_t slots, int64_t m, int64_t chunks, int64_t samples_per_chunk,
                                          int64_t sum_rows, jet::SlotLayout layout, math::Function function,
                                          math::FunctionParams params) {
  const int64_t threads = chunks * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < threads; t += stride) {
    const int64_t chunk = t / m, unit = t - chunk * m;
    const int64_t begin = chunk * samples_per_chunk;
    const int64_t end = begin + samples_per_chunk < n ? begin + samples_per_chunk : n;
    jet::first_backward_unit<scalar_t>(grad, pre, weight_t, pair_products, grad_a, sums + chunk * sum_rows * m, unit,
                                       begin, end, slots, m, layout, function, params);
  }
}

template <typename scalar_t>
const scalar_t* pointer_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

at::Tensor jet_activation_cuda(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                               const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const c10::cuda::CUDAGuard device_guard(jet.device());
  const JetCall call = prepare_jet_activation(jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed);
  if (call.out.numel() == 0) return call.out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_cuda", [&] {
    jet_forward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), pointer_or_null<scalar_t>(call.bias),
        call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m, call.layout, call.parsed.function,
        call.parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor jet_activation_backward_cuda(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                        const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const c10::cuda::CUDAGuard device_guard(jet.device());
  const JetCall call =
      prepare_jet_activation_backward(grad, jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed);
  if (call.out.numel() == 0) return call.out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_backward_cuda", [&] {
    jet_backward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.grad.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
        pointer_or_null<scalar_t>(call.bias), call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m,
        call.layout, call.parsed.function, call.parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor jet_activation_first_cuda(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  const c10::cuda::CUDAGuard device_guard(preactivation.device());
  const JetCall call =
      prepare_jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed);
  if (call.out.numel() == 0) return call.out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_cuda", [&] {
    jet_first_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), call.weight_t.const_data_ptr<scalar_t>(),
        call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m, call.layout, call.parsed.function,
        call.parsed.params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

// Samples per CUDA thread in the first layer's backward: enough to amortise
// the partial sums' traffic, few enough to keep every SM busy at PINN sizes.
constexpr int64_t kFirstBackwardSamplesPerThread = 32;

std::tuple<at::Tensor, at::Tensor> jet_activation_first_backward_cuda(
    const at::Tensor& grad, const at::Tensor& preactivation, const at::Tensor& weight, c10::string_view function,
    c10::ArrayRef<double> params, const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  const c10::cuda::CUDAGuard device_guard(preactivation.device());
  JetCall call =
      prepare_jet_activation_first_backward(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed);
  allocate_chunk_sums(call, kFirstBackwardSamplesPerThread);
  const int64_t chunks = call.sums.size(0);
  if (call.n > 0 && call.m > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_backward_cuda", [&] {
      jet_first_backward_kernel<scalar_t><<<grid_size_for(chunks * call.m), kThreadsPerBlock, 0, stream>>>(
          call.grad.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
          call.weight_t.const_data_ptr<scalar_t>(), call.pair_products.const_data_ptr<scalar_t>(),
          call.out.mutable_data_ptr<scalar_t>(), call.sums.mutable_data_ptr<scalar_t>(), call.n, call.slots,
          call.m, chunks, call.samples_per_chunk, call.sums.size(1), call.layout, call.parsed.function,
          call.parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_jet_activation_first_backward(call);
}

}  // namespace
}  // namespace cuda
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CUDA, m) {
  m.impl("jet_activation", &hoderiv::cuda::jet_activation_cuda);
  m.impl("jet_activation_backward", &hoderiv::cuda::jet_activation_backward_cuda);
  m.impl("jet_activation_first", &hoderiv::cuda::jet_activation_first_cuda);
  m.impl("jet_activation_first_backward", &hoderiv::cuda::jet_activation_first_backward_cuda);
}
