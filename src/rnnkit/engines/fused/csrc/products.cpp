// The products over all T·B rows (the input side and the weight gradients).
//
// In float32 they go through PyTorch's oneDNN matmul where it is available, the
// library its own CPU LSTM uses; elsewhere through at::mm.
#include <torch/library.h>

#include "common.h"

namespace at::native {
// PyTorch's oneDNN matmul, out = beta * out + alpha * a @ b: exported by libtorch but not
// in its installed headers, so declared weak; the library still loads without it.
__attribute__((weak)) void mkldnn_matmul(
    const Tensor& a, const Tensor& b, const Tensor& out, float beta, float alpha);
}  // namespace at::native

namespace rnnkit {
namespace {

// Whether float32 products can go through oneDNN: checked once against at::mm.
bool onednn_matmul_works() {
  static const bool works = [] {
    if (&at::native::mkldnn_matmul == nullptr || !at::hasMKLDNN() || !onednn_allowed()) {
      return false;
    }
    try {
      const Tensor a = at::arange(15, at::kFloat).view({3, 5}).sin();  // no RNG draws
      const Tensor b = at::arange(20, at::kFloat).view({5, 4}).cos();
      Tensor out = at::ones({3, 4});
      at::native::mkldnn_matmul(a, b, out, 1.0f, 1.0f);
      return at::allclose(out, at::addmm(at::ones({3, 4}), a, b), 1e-5, 1e-5);
    } catch (const std::exception&) {
      return false;
    }
  }();
  return works;
}

}  // namespace

// out = a @ b, plus out itself with accumulate, for the products over all T·B rows (the
// input side, the weight gradients); the per-step ones go through StepProduct. In
// float32 oneDNN runs them about twice as fast as at::mm's BLAS, which on some CPUs
// does not use their widest vector units, and it reads a transposed `a` in place.
// float64 stays with at::mm.
void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  if (out.scalar_type() == at::kFloat && out.numel() > 0 && a.size(1) > 0 &&
      onednn_matmul_works()) {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

// a @ b + bias for a (..., K) and b (K, N) (bias (N,) broadcast over rows): the input
// side and its gradients, one product over all T·B rows each, through the same
// products as the loop. The result (..., N) is a tensor of its own, not a view.
Tensor mm_op(const Tensor& a_, const Tensor& b, const OptTensor& bias) {
  const Tensor a = a_.dim() == 2 ? a_ : a_.reshape({-1, a_.size(-1)});
  std::vector<int64_t> shape(a_.sizes().begin(), a_.sizes().end());
  shape.back() = b.size(1);
  // A fresh tensor even for one row: expand(...).contiguous() of a single row would
  // hand back the bias itself, and the product would accumulate into it.
  Tensor out = at::empty(shape, a.options());
  if (bias) out.copy_(bias->expand(shape));
  Tensor out2 = out.view({a.size(0), b.size(1)});
  matmul(out2, a, b, /*accumulate=*/bias.has_value());
  return out;
}

}  // namespace rnnkit

TORCH_LIBRARY_FRAGMENT(rnnkit_fused, m) {
  m.def("mm(Tensor a, Tensor b, Tensor? bias) -> Tensor", &rnnkit::mm_op);
}
