// CUDA implementations of the bi-Laplacian's extra-slot step (math:
// hoderiv/bilaplacian_math.h, shared with the CPU kernels; checks and
// operands: csrc/ops/prepare_bilaplacian.cpp). One thread per column
// (sample n, unit j) in a grid-stride loop; consecutive threads take
// consecutive units, so every slot's reads and writes are coalesced. The
// dims list travels by value in the launch (a bilaplacian::DimsTable
// `const __grid_constant__` parameter): no host-to-device copy, capturable
// in CUDA graphs.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/launch.cuh"
#include "hoderiv/bilaplacian_math.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void bilaplacian_extra_forward_kernel(const scalar_t* __restrict__ jet, int64_t jet_sample_stride,
                                                 const scalar_t* __restrict__ bias,
                                                 const scalar_t* __restrict__ extra, int64_t extra_sample_stride,
                                                 scalar_t* __restrict__ out, int64_t n, int64_t m,
                                                 math::Function function, math::FunctionParams params,
                                                 const __grid_constant__ bilaplacian::DimsTable dims) {
  const bilaplacian::ExtraLayout layout = dims.layout();
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    bilaplacian::forward_column<scalar_t>(jet, jet_sample_stride, bias, extra, extra_sample_stride, out, c, m, layout,
                                          function, params);
  }
}

template <typename scalar_t>
__global__ void bilaplacian_extra_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ jet,
                                                  int64_t jet_sample_stride, const scalar_t* __restrict__ bias,
                                                  const scalar_t* __restrict__ extra, int64_t extra_sample_stride,
                                                  scalar_t* __restrict__ grad_jet, scalar_t* __restrict__ grad_extra,
                                                  int64_t n, int64_t m, math::Function function,
                                                  math::FunctionParams params,
                                                  const __grid_constant__ bilaplacian::DimsTable dims) {
  const bilaplacian::ExtraLayout layout = dims.layout();
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    bilaplacian::backward_column<scalar_t>(grad, jet, jet_sample_stride, bias, extra, extra_sample_stride, grad_jet,
                                           grad_extra, c, m, layout, function, params);
  }
}

template <typename scalar_t>
const scalar_t* pointer_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

bilaplacian::DimsTable dims_table(const char* op, const BilaplacianExtraCall& call) {
  const bilaplacian::ExtraLayout host = call.layout();
  TORCH_CHECK(host.num_dims <= bilaplacian::DimsTable::kCapacity, op, ": dims lists ", host.num_dims,
              " tangents; the CUDA kernel takes at most ", bilaplacian::DimsTable::kCapacity);
  return bilaplacian::dims_table_of(host);
}

at::Tensor jet_bilaplacian_extra_cuda(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                      const at::Tensor& extra, c10::string_view function,
                                      c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef dims) {
  const BilaplacianExtraCall call =
      prepare_jet_bilaplacian_extra(jet, bias, extra, function, params, num_tangents, dims);
  const bilaplacian::DimsTable table = dims_table("hoderiv_ext.jet_bilaplacian_extra", call);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_bilaplacian_extra_cuda", [&] {
    bilaplacian_extra_forward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.jet.const_data_ptr<scalar_t>(), call.jet_sample_stride, pointer_or_null<scalar_t>(call.bias),
        call.extra.const_data_ptr<scalar_t>(), call.extra_sample_stride, call.out.mutable_data_ptr<scalar_t>(),
        call.n, call.m, call.parsed.function, call.parsed.params, table);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

std::tuple<at::Tensor, at::Tensor> jet_bilaplacian_extra_backward_cuda(
    const at::Tensor& grad, const at::Tensor& jet, const c10::optional<at::Tensor>& bias, const at::Tensor& extra,
    c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef dims) {
  const BilaplacianExtraCall call =
      prepare_jet_bilaplacian_extra_backward(grad, jet, bias, extra, function, params, num_tangents, dims);
  const bilaplacian::DimsTable table = dims_table("hoderiv_ext.jet_bilaplacian_extra_backward", call);
  if (call.out.numel() == 0) return {call.grad_jet, call.out};
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_bilaplacian_extra_backward_cuda", [&] {
    bilaplacian_extra_backward_kernel<scalar_t><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
        call.grad.const_data_ptr<scalar_t>(), call.jet.const_data_ptr<scalar_t>(), call.jet_sample_stride,
        pointer_or_null<scalar_t>(call.bias), call.extra.const_data_ptr<scalar_t>(), call.extra_sample_stride,
        call.grad_jet.mutable_data_ptr<scalar_t>(), call.out.mutable_data_ptr<scalar_t>(), call.n, call.m,
        call.parsed.function, call.parsed.params, table);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {call.grad_jet, call.out};
}

}  // namespace
}  // namespace cuda

void register_bilaplacian_cuda(torch::Library& library) {
  library.impl("jet_bilaplacian_extra", &cuda::jet_bilaplacian_extra_cuda);
  library.impl("jet_bilaplacian_extra_backward", &cuda::jet_bilaplacian_extra_backward_cuda);
}

}  // namespace hoderiv
