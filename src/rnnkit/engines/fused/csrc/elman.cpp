// Elman and leaky-integrator recurrences (the leaky cell is Elman with alpha).
//
//   hin_t = h_{t-1} * mask                      (mask: recurrent dropout, else 1)
//   a_t   = xp_t + hin_t @ w_hh^T               (xp_t = W_ih x_t + b_ih + b_hh)
//   f_t   = act(a_t)
//   h_t   = alpha * hin_t + (1 - alpha) * f_t   (h_t = f_t without alpha)
//
// Steps outside a sequence (valid = 0) emit zeros and carry h unchanged.
#include <torch/library.h>

#include "common.h"

namespace rnnkit {

// Returns y (T, B, H), f (T, B, H) (leaky only, else undefined) and the final h (B, H).
std::tuple<Tensor, Tensor, Tensor> elman_forward(
    const Tensor& xp_, const Tensor& h0, const Tensor& w_hh, const OptTensor& alpha_,
    int64_t act, const OptTensor& valid_, const OptTensor& mask_) {
  const Tensor xp = xp_.contiguous();
  const OptTensor alpha = contiguous(alpha_), valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2);
  Tensor y = at::empty_like(xp);
  Tensor f_all = alpha ? at::empty_like(xp) : Tensor();
  Tensor h = h0.contiguous().clone();                   // carried state (B, H)
  Tensor hin = mask ? at::empty_like(h) : h;            // what the product reads
  Tensor prod_buf = at::empty({B, H}, xp.options());
  const StepProduct product(w_hh, B);                   // hin @ w_hh^T

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "elman_forward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pal = maybe_ptr<T_>(alpha);
    for (int64_t t = 0; t < T; ++t) {
      masked_state<T_>(h, pm, hin);                     // hin is h itself without a mask
      const Tensor prod = product(hin, prod_buf);        // (B, H)
      const T_* pp = prod.data_ptr<T_>();
      const T_* px = xp[t].data_ptr<T_>();
      T_* pf = alpha ? f_all[t].data_ptr<T_>() : nullptr;
      T_* py = y[t].data_ptr<T_>();
      T_* ph = h.data_ptr<T_>();
      const T_* phi = hin.data_ptr<T_>();
      with_activation(act, [&](auto Act) {
      with_flag(pal != nullptr, [&](auto leaky) {
      // By value: the compiler then knows the pointers stay put, and vectorises.
      for_rows(B, H, [=](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T_ v = pv ? pv[t * B + b] : T_(1);
          const int64_t r = b * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ f = activate<Act()>(px[r + j] + pp[r + j]);
            T_ hn = f;
            if constexpr (leaky()) {
              pf[r + j] = f;                             // kept for the backward
              hn = pal[j] * phi[r + j] + (T_(1) - pal[j]) * f;
            }
            py[r + j] = v * hn;
            ph[r + j] = v != T_(0) ? hn : ph[r + j];
          }
        }
      });
      });
      });
    }
  });
  return {y, f_all, h};
}

// Returns da (T, B, H) (the gradient of xp and of the product), dh0 (B, H), and with
// need_dalpha dhn (T, B, H), the gradient reaching each new state (for d alpha).
std::tuple<Tensor, Tensor, Tensor> elman_backward(
    const Tensor& dy_, const Tensor& dhT, const Tensor& y_, const OptTensor& f_all_,
    const Tensor& w_hh_, const OptTensor& alpha_, int64_t act, const OptTensor& valid_,
    const OptTensor& mask_, bool need_dalpha) {
  const Tensor dy = dy_.contiguous(), y = y_.contiguous(), w_hh = w_hh_.contiguous();
  const OptTensor f_all = contiguous(f_all_), alpha = contiguous(alpha_);
  const OptTensor valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = y.size(0), B = y.size(1), H = y.size(2);
  Tensor da = at::empty_like(y);
  Tensor dhn_all = alpha && need_dalpha ? at::empty_like(y) : Tensor();
  Tensor dh = dhT.contiguous().clone();                  // gradient carried to h_{t-1}
  Tensor keep = at::empty_like(dh), direct = at::empty_like(dh), prod_buf = at::empty_like(dh);
  const StepProduct product(w_hh.t(), B);                // da @ w_hh

  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "elman_backward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pal = maybe_ptr<T_>(alpha);
    for (int64_t t = T - 1; t >= 0; --t) {
      const T_* pdy = dy[t].data_ptr<T_>();
      const T_* pf = alpha ? (*f_all)[t].data_ptr<T_>() : y[t].data_ptr<T_>();
      T_* pda = da[t].data_ptr<T_>();
      T_* pdhn = dhn_all.defined() ? dhn_all[t].data_ptr<T_>() : nullptr;
      T_* pdh = dh.data_ptr<T_>();
      T_* pk = keep.data_ptr<T_>();
      T_* pd = direct.data_ptr<T_>();
      with_activation(act, [&](auto Act) {
      with_flag(pal != nullptr, [&](auto leaky) {
      // By value: the compiler then knows the pointers stay put, and vectorises.
      for_rows(B, H, [=](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T_ v = pv ? pv[t * B + b] : T_(1);
          const int64_t r = b * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ g = pdh[r + j] + v * pdy[r + j];
            const T_ dhn = v * g;                        // into this step's new state
            pk[r + j] = g - dhn;                         // passes a padded step unchanged
            if constexpr (leaky()) {
              pda[r + j] = dhn * (T_(1) - pal[j]) * activate_grad<Act()>(pf[r + j]);
              pd[r + j] = dhn * pal[j];
              if (pdhn) pdhn[r + j] = dhn;               // only for a learned alpha
            } else {
              pda[r + j] = dhn * activate_grad<Act()>(pf[r + j]);
              pd[r + j] = T_(0);
            }
          }
        }
      });
      });
      });
      const Tensor prod = product(da[t], prod_buf);      // (B, H): d hin through the product
      const T_* pp = prod.data_ptr<T_>();
      for (int64_t k = 0; k < B * H; ++k) {
        const T_ dhin = pd[k] + pp[k];
        pdh[k] = pk[k] + (pm ? dhin * pm[k] : dhin);
      }
    }
  });
  return {da, dh, dhn_all};
}

}  // namespace rnnkit

TORCH_LIBRARY_FRAGMENT(rnnkit_fused, m) {
  m.def(
      "elman_forward(Tensor xp, Tensor h0, Tensor w_hh, Tensor? alpha, int act, Tensor? valid, "
      "Tensor? mask) -> (Tensor, Tensor, Tensor)",
      &rnnkit::elman_forward);
  m.def(
      "elman_backward(Tensor dy, Tensor dhT, Tensor y, Tensor? f, Tensor w_hh, Tensor? alpha, "
      "int act, Tensor? valid, Tensor? mask, bool need_dalpha) -> (Tensor, Tensor, Tensor)",
      &rnnkit::elman_backward);
}
