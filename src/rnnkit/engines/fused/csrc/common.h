// Shared pieces of the fused recurrences: the element-wise maths and the loop helpers.
//
// Every kernel works on contiguous time-major tensors. Element-wise work runs as plain
// loops the compiler vectorises (exp/tanh through the C library's vector maths), split
// over rows with at::parallel_for only when a step has enough elements to pay for it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <optional>
#include <type_traits>

namespace rnnkit {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Built with -ffast-math (the vector exp/tanh need it), which assumes no infinities:
// the clamp keeps exp finite, and sigmoid(-80) is already below float's precision.
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(std::min(-x, T(80))));
}

// Activation codes shared with Python (fused/functions.py ACTIVATIONS).
enum Activation : int64_t { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// The activation is a template argument so each inner loop has no branch on it and
// the compiler can vectorise it.
template <int64_t Act, typename T>
inline T activate(T a) {
  if constexpr (Act == kTanh) return std::tanh(a);
  if constexpr (Act == kRelu) return a > T(0) ? a : T(0);
  if constexpr (Act == kSigmoid) return sigmoid(a);
}

// f'(a) written in terms of f = f(a), which is what the forward keeps.
template <int64_t Act, typename T>
inline T activate_grad(T f) {
  if constexpr (Act == kTanh) return T(1) - f * f;
  if constexpr (Act == kRelu) return f > T(0) ? T(1) : T(0);
  if constexpr (Act == kSigmoid) return f * (T(1) - f);
}

// Calls fn(std::integral_constant<int64_t, act>{}) so fn can use act at compile time.
template <typename F>
inline void with_activation(int64_t act, const F& fn) {
  switch (act) {
    case kTanh: return fn(std::integral_constant<int64_t, kTanh>{});
    case kRelu: return fn(std::integral_constant<int64_t, kRelu>{});
    case kSigmoid: return fn(std::integral_constant<int64_t, kSigmoid>{});
    default: TORCH_CHECK(false, "unknown activation code ", act);
  }
}

// Calls fn(std::true_type{}) or fn(std::false_type{}), so an optional tensor's presence
// is known at compile time and the inner loops carry no branch on it.
template <typename F>
inline void with_flag(bool flag, const F& fn) {
  if (flag) return fn(std::true_type{});
  return fn(std::false_type{});
}

// Runs fn(begin_row, end_row) over `rows` rows of `width` elements each, in parallel
// only when the work is large enough that threads win over their start-up cost.
template <typename F>
inline void for_rows(int64_t rows, int64_t width, const F& fn) {
  constexpr int64_t kMinElementsPerTask = 32768;
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, width));
  if (rows <= grain) {
    fn(0, rows);
  } else {
    at::parallel_for(0, rows, grain, fn);
  }
}

// hin = h * mask into `out` (B, H), or h itself without a mask.
template <typename T_>
Tensor masked_state(const Tensor& h, const T_* pm, Tensor& out) {
  if (!pm) return h;
  const T_* ph = h.data_ptr<T_>();
  T_* po = out.data_ptr<T_>();
  const int64_t n = out.numel();
  _Pragma("omp simd")
  for (int64_t k = 0; k < n; ++k) po[k] = ph[k] * pm[k];
  return out;
}

// dh += mask * prod, the masked gradient through the step's product (a mask is given).
template <typename T_>
void add_masked(Tensor& dh, const Tensor& prod, const T_* pm) {
  T_* pdh = dh.data_ptr<T_>();
  const T_* pp = prod.data_ptr<T_>();
  const int64_t n = dh.numel();
  _Pragma("omp simd")
  for (int64_t k = 0; k < n; ++k) pdh[k] += pm[k] * pp[k];
}

// Pointer to row t of a (T, ...) tensor's data, or nullptr for an absent tensor.
template <typename T>
inline const T* maybe_ptr(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

inline Tensor contiguous(const Tensor& t) { return t.contiguous(); }

// False when RNNKIT_ONEDNN=0 asks for at::mm everywhere (to compare the two).
inline bool onednn_allowed() {
  const char* flag = std::getenv("RNNKIT_ONEDNN");
  return !(flag && std::string(flag) == "0");
}

// out = a @ b (out += a @ b with accumulate), for the products over all T·B rows:
// oneDNN in float32 where PyTorch has it, else at::mm (products.cpp).
void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool accumulate = false);

// a @ w^T for a weight w (N, K) that every step multiplies by. In float32, on a
// PyTorch built with oneDNN, the weight is packed once into oneDNN's blocked layout
// and each step calls oneDNN's matmul (the one torch.nn.LSTM uses on the CPU): for
// step-sized products (B of 1 to a few hundred rows) it runs about 3x faster than
// at::mm. Elsewhere (float64, no oneDNN) it is at::mm into a reused buffer.
class StepProduct {
 public:
  StepProduct(const Tensor& w, int64_t batch) : w_t_(w.t()) {
    if (w.scalar_type() == at::kFloat && onednn_ops()) {
      static auto reorder = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                                .typed<Tensor(const Tensor&, std::optional<int64_t>)>();
      packed_ = reorder.call(w.contiguous(), batch);
    }
  }

  // a (B, K) -> a @ w^T (B, N), contiguous: a fresh tensor from oneDNN, or `out`.
  Tensor operator()(const Tensor& a, Tensor& out) const {
    if (!packed_.defined()) return at::mm_out(out, a, w_t_);
    static auto linear =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
            .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                          c10::string_view, c10::List<std::optional<c10::Scalar>>,
                          std::optional<c10::string_view>)>();
    return linear.call(a.contiguous(), packed_, std::nullopt, "none", c10::List<std::optional<c10::Scalar>>(),
                       std::nullopt);
  }

 private:
  static bool onednn_ops() {
    static const bool found =
        onednn_allowed() && at::hasMKLDNN() &&
        c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value() &&
        c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""}).has_value();
    return found;
  }

  Tensor w_t_, packed_;
};

inline OptTensor contiguous(const OptTensor& t) {
  if (t.has_value() && t->defined()) return t->contiguous();
  return std::nullopt;
}

}  // namespace rnnkit
