// CUDA implementations of the Taylor-mode activation step (math:
// hoderiv/jet_math.h, shared with the CPU kernels; checks and operands:
// csrc/ops/prepare_jet.cpp). One thread per column (sample n, unit j);
// consecutive threads take consecutive units, so every slot's reads and
// writes are coalesced.
//
// The pair and collapsed lists, validated on the host, reach the kernels by
// value in a jet::IndexTable (a `const __grid_constant__` parameter): no
// host-to-device copy, no synchronisation, capturable in CUDA graphs. Only a
// list longer than the table's capacity (IndexTable::kPairCapacity pairs,
// kCollapsedCapacity collapsed entries) travels instead in a small device
// tensor copied from the validated host list (pinned memory, asynchronous on
// the current stream). That fallback is NOT graph-capturable: a replay would
// reuse the captured copy's host buffer, which is not kept.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>
#include <tuple>

#include "cuda/launch.cuh"
#include "hoderiv/jet_math.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace cuda {
namespace {

// Grid-stride loops over the columns; each column's work is a shared
// function of jet_math.h (tested on the host by csrc/tests/test_jet_math.cpp).
template <typename scalar_t>
__global__ void jet_forward_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ bias,
                                   const scalar_t* __restrict__ residual, scalar_t* __restrict__ out, int64_t n,
                                   int64_t slots, int64_t m, math::Function function, math::FunctionParams params,
                                   const __grid_constant__ jet::IndexTable indices) {
  const jet::SlotLayout layout = indices.layout();
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    jet::forward_column<scalar_t>(in, bias, out, c, slots, m, layout, function, params, residual);
  }
}

template <typename scalar_t>
__global__ void jet_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ in,
                                    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_in, int64_t n,
                                    int64_t slots, int64_t m, math::Function function, math::FunctionParams params,
                                    const __grid_constant__ jet::IndexTable indices) {
  const jet::SlotLayout layout = indices.layout();
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    jet::backward_column<scalar_t>(grad_out, in, bias, grad_in, c, slots, m, layout, function, params);
  }
}

// weight_t: the weight's transpose (t, m), so T_k of unit j is weight_t[k * m + j].
template <typename scalar_t>
__global__ void jet_first_kernel(const scalar_t* __restrict__ pre, const scalar_t* __restrict__ weight_t,
                                 scalar_t* __restrict__ out, int64_t n, int64_t slots, int64_t m,
                                 math::Function function, math::FunctionParams params,
                                 const __grid_constant__ jet::IndexTable indices) {
  const jet::SlotLayout layout = indices.layout();
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
                                          const scalar_t* __restrict__ weight_t, scalar_t* __restrict__ grad_a,
                                          scalar_t* __restrict__ sums, int64_t n, int64_t slots, int64_t m,
                                          int64_t chunks, int64_t samples_per_chunk, math::Function function,
                                          math::FunctionParams params,
                                          const __grid_constant__ jet::IndexTable indices) {
  const jet::SlotLayout layout = indices.layout();
  const int64_t chunk_stride = jet::first_sum_rows(layout) * m;
  const int64_t threads = chunks * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < threads; t += stride) {
    const int64_t chunk = t / m, unit = t - chunk * m;
    const int64_t begin = chunk * samples_per_chunk;
    const int64_t end = begin + samples_per_chunk < n ? begin + samples_per_chunk : n;
    jet::first_backward_unit<scalar_t>(grad, pre, weight_t, grad_a, sums + chunk * chunk_stride, unit, begin, end,
                                       slots, m, layout, function, params);
  }
}

// The chunks' sums added up in fixed groups of kChunksPerGroup consecutive
// chunks, in chunk order: thread (group, row, unit) alone writes its entry
// of group_sums (groups, rows, m). Deterministic, no atomics, and enough
// threads to keep the GPU busy where one thread per (row, unit) would not.
template <typename scalar_t>
__global__ void jet_first_group_sums_kernel(const scalar_t* __restrict__ sums, scalar_t* __restrict__ group_sums,
                                            int64_t chunks, int64_t groups, int64_t chunks_per_group, int64_t rows,
                                            int64_t m) {
  const int64_t chunk_stride = rows * m;
  const int64_t items = groups * chunk_stride;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < items; e += stride) {
    const int64_t group = e / chunk_stride, within = e - group * chunk_stride;  // within = row * m + unit
    const int64_t first = group * chunks_per_group;
    const int64_t count = first + chunks_per_group < chunks ? chunks_per_group : chunks - first;
    jet::sum_chunks_columns<scalar_t>(sums + first * chunk_stride + within, count, chunk_stride, 1, group_sums + e);
  }
}

// The weight's gradient (m, t): thread e = k * m + unit computes entry
// (unit, k) whole from the group sums (groups, rows, m), adding them in group
// order: deterministic, no atomics. Consecutive threads read consecutive units.
template <typename scalar_t>
__global__ void jet_first_weight_grad_kernel(const scalar_t* __restrict__ group_sums,
                                             const scalar_t* __restrict__ weight_t,
                                             scalar_t* __restrict__ grad_weight, int64_t m, int64_t groups,
                                             const __grid_constant__ jet::IndexTable indices) {
  const jet::SlotLayout layout = indices.layout();
  const int64_t t = layout.num_tangents;
  const int64_t chunk_stride = jet::first_sum_rows(layout) * m;
  const int64_t entries = t * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < entries; e += stride) {
    const int64_t k = e / m, unit = e - k * m;
    grad_weight[unit * t + k] =
        jet::first_weight_grad_entry<scalar_t>(group_sums, groups, chunk_stride, weight_t, m, k, unit, layout);
  }
}

// A call's index lists as the kernels' argument. `external` holds the device
// copy of the lists that exceed the table's capacity (undefined when all fit
// inline); it is freed after the launches are queued, which the caching
// allocator orders after them on the current stream.
struct KernelIndices {
  jet::IndexTable table;
  at::Tensor external;
};

KernelIndices kernel_indices(const JetIndices& indices, const at::Device& device) {
  const jet::SlotLayout host = indices.layout();
  KernelIndices result{jet::index_table_of(host), at::Tensor()};
  const bool pairs_inline = jet::IndexTable::pairs_fit(host.num_pairs);
  const bool collapsed_inline = jet::IndexTable::collapsed_fits(host.num_collapsed);
  if (pairs_inline && collapsed_inline) return result;
  // The fallback (not graph-capturable): the long lists in one pinned host
  // buffer, copied asynchronously on the current stream. The host allocator
  // keeps the buffer until the copy has run.
  const int64_t pair_entries = pairs_inline ? 0 : host.num_pairs;
  const int64_t collapsed_entries = collapsed_inline ? 0 : host.num_collapsed;
  at::Tensor staging = at::empty({2 * pair_entries + collapsed_entries},
                                 at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  static_assert(sizeof(jet::Index) == sizeof(int32_t), "the staging tensor is int32");
  jet::Index* staged = staging.mutable_data_ptr<jet::Index>();
  std::memcpy(staged, host.pair_i, sizeof(jet::Index) * pair_entries);
  std::memcpy(staged + pair_entries, host.pair_j, sizeof(jet::Index) * pair_entries);
  std::memcpy(staged + 2 * pair_entries, host.collapsed, sizeof(jet::Index) * collapsed_entries);
  result.external = staging.to(device, /*non_blocking=*/true);
  const jet::Index* on_device = result.external.const_data_ptr<jet::Index>();
  if (!pairs_inline) {
    result.table.pair_i_external = on_device;
    result.table.pair_j_external = on_device + pair_entries;
  }
  if (!collapsed_inline) result.table.collapsed_external = on_device + 2 * pair_entries;
  return result;
}

template <typename scalar_t>
const scalar_t* pointer_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

at::Tensor jet_activation_cuda(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                               c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                               const c10::optional<at::Tensor>& residual) {
  const JetCall call =
      prepare_jet_activation(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const KernelIndices indices = kernel_indices(call.indices, call.out.device());
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_cuda", [&] {
    jet_forward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), pointer_or_null<scalar_t>(call.bias),
        pointer_or_null<scalar_t>(call.residual), call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m,
        call.parsed.function, call.parsed.params, indices.table);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor jet_activation_backward_cuda(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef pair_i,
                                        c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  const JetCall call =
      prepare_jet_activation_backward(grad, jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const KernelIndices indices = kernel_indices(call.indices, call.out.device());
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_backward_cuda", [&] {
    jet_backward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.grad.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
        pointer_or_null<scalar_t>(call.bias), call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m,
        call.parsed.function, call.parsed.params, indices.table);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor jet_activation_first_cuda(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  const JetCall call = prepare_jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const KernelIndices indices = kernel_indices(call.indices, call.out.device());
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_cuda", [&] {
    jet_first_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), call.weight_t.const_data_ptr<scalar_t>(),
        call.out.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m, call.parsed.function, call.parsed.params,
        indices.table);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

// Samples per CUDA thread in the first layer's backward: enough to amortise
// the partial sums' traffic, few enough to keep every SM busy at PINN sizes.
// A constant: the chunks, hence the order of the sums, never depend on the
// launch configuration.
constexpr int64_t kFirstBackwardSamplesPerThread = 32;
// Chunks added up per thread before the weight gradient's entries: a constant too.
constexpr int64_t kChunksPerGroup = 32;

std::tuple<at::Tensor, at::Tensor> jet_activation_first_backward_cuda(
    const at::Tensor& grad, const at::Tensor& preactivation, const at::Tensor& weight, c10::string_view function,
    c10::ArrayRef<double> params, c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  JetCall call =
      prepare_jet_activation_first_backward(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed);
  if (call.m == 0) return {call.out, call.grad_weight};
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  allocate_chunk_sums(call, kFirstBackwardSamplesPerThread);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const KernelIndices indices = kernel_indices(call.indices, call.out.device());
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_backward_cuda", [&] {
    if (call.n > 0) {
      jet_first_backward_kernel<scalar_t><<<grid_size_for(call.chunks * call.m), kThreadsPerBlock, 0, stream>>>(
          call.grad.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
          call.weight_t.const_data_ptr<scalar_t>(), call.out.mutable_data_ptr<scalar_t>(),
          call.sums.mutable_data_ptr<scalar_t>(), call.n, call.slots, call.m, call.chunks, call.samples_per_chunk,
          call.parsed.function, call.parsed.params, indices.table);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const int64_t entries = call.indices.num_tangents * call.m;
    if (entries > 0) {
      const int64_t rows = call.sums.size(1);
      const int64_t groups = (call.chunks + kChunksPerGroup - 1) / kChunksPerGroup;
      const at::Tensor group_sums = at::empty({groups, rows, call.m}, call.sums.options());
      if (groups > 0) {
        jet_first_group_sums_kernel<scalar_t>
            <<<grid_size_for(groups * rows * call.m), kThreadsPerBlock, 0, stream>>>(
                call.sums.const_data_ptr<scalar_t>(), group_sums.mutable_data_ptr<scalar_t>(), call.chunks, groups,
                kChunksPerGroup, rows, call.m);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      jet_first_weight_grad_kernel<scalar_t><<<grid_size_for(entries), kThreadsPerBlock, 0, stream>>>(
          group_sums.const_data_ptr<scalar_t>(), call.weight_t.const_data_ptr<scalar_t>(),
          call.grad_weight.mutable_data_ptr<scalar_t>(), call.m, groups, indices.table);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {call.out, call.grad_weight};
}

}  // namespace
}  // namespace cuda

void register_jet_cuda(torch::Library& library) {
  library.impl("jet_activation", &cuda::jet_activation_cuda);
  library.impl("jet_activation_backward", &cuda::jet_activation_backward_cuda);
  library.impl("jet_activation_first", &cuda::jet_activation_first_cuda);
  library.impl("jet_activation_first_backward", &cuda::jet_activation_first_backward_cuda);
}

}  // namespace hoderiv
