// GRU recurrences, gates in PyTorch's order r, z, n along the rows of w_hh.
//
//   hin_t = h_{t-1} * mask                            (mask: recurrent dropout, else 1)
//
// reset="after" (PyTorch, cuDNN): one product per step.
//   gh_t  = hin_t @ w_hh^T + b_hh                     (B, 3H)
//   r, z  = sigmoid(xp_t[r, z] + gh_t[r, z])
//   n_t   = tanh(xp_t[n] + r * gh_t[n])
//
// reset="before" (Cho et al.): the candidate's product waits for r.
//   r, z  = sigmoid(xp_t[r, z] + hin_t @ w_hh[r, z]^T)  (b_hh is folded into xp)
//   q_t   = r * hin_t
//   n_t   = tanh(xp_t[n] + q_t @ w_hh[n]^T)
//
// Both:   h_t = n_t + z * (hin_t - n_t)             (= (1 - z) n_t + z hin_t)
//
// Steps outside a sequence (valid = 0) emit zeros and carry h unchanged. The forward
// writes the carried state into hs (T + 1, B, H): hs[t] is h_{t-1}, so the backward
// and the weight gradients read every step's hin without a copy.
#include <torch/library.h>

#include "common.h"

namespace rnnkit {

// reset="after". Returns y (T, B, H), gates (T, B, 4H) holding [r, z, n, gh_n] per row
// for the backward, and hs (T + 1, B, H) (hs[T] is the final state).
std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& xp_, const Tensor& h0, const Tensor& w_hh, const OptTensor& b_hh_,
    const OptTensor& valid_, const OptTensor& mask_) {
  const Tensor xp = xp_.contiguous();
  const OptTensor b_hh = contiguous(b_hh_), valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 3;
  Tensor y = at::empty({T, B, H}, xp.options());
  Tensor gates = at::empty({T, B, 4 * H}, xp.options());
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor hin_buf = mask ? at::empty({B, H}, xp.options()) : Tensor();
  Tensor gh = at::empty({B, 3 * H}, xp.options());       // the product, bias added below
  const StepProduct product(w_hh, B);                    // hin @ w_hh^T

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pb = maybe_ptr<T_>(b_hh);
    const T_* pxp = xp.data_ptr<T_>();
    T_* pg = gates.data_ptr<T_>();
    T_* py = y.data_ptr<T_>();
    T_* phs = hs.data_ptr<T_>();
    for (int64_t t = 0; t < T; ++t) {
      const Tensor hin = masked_state<T_>(hs[t], pm, hin_buf);
      const Tensor gh_t = product(hin, gh);
      const T_* pgh = gh_t.data_ptr<T_>();
      const T_* phi = hin.data_ptr<T_>();
      with_flag(pb != nullptr, [&](auto biased) {
      for_rows(B, 4 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_ v = pv ? pv[row] : T_(1);
          const T_* x = pxp + row * 3 * H;               // [xr, xz, xn]
          const T_* g = pgh + b * 3 * H;                 // [ghr, ghz, ghn] without b_hh
          T_* G = pg + row * 4 * H;                      // [r, z, n, ghn]
          const T_* hi = phi + b * H;
          const T_* hp = phs + row * H;                  // h_{t-1}, undropped
          T_* hn = phs + (row + B) * H;                  // h_t
          T_* yo = py + row * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            T_ ar = x[j] + g[j], az = x[H + j] + g[H + j], ghn = g[2 * H + j];
            if constexpr (biased()) {
              ar += pb[j];
              az += pb[H + j];
              ghn += pb[2 * H + j];
            }
            const T_ r = sigmoid(ar);
            const T_ z = sigmoid(az);
            const T_ n = std::tanh(x[2 * H + j] + r * ghn);
            const T_ h = n + z * (hi[j] - n);
            G[j] = r;
            G[H + j] = z;
            G[2 * H + j] = n;
            G[3 * H + j] = ghn;
            yo[j] = v * h;
            hn[j] = v != T_(0) ? h : hp[j];
          }
        }
      });
      });
    }
  });
  return {y, gates, hs};
}

// reset="after". hin (T, B, H) is every step's hin (hs[:T] * mask). Returns dxp
// (T, B, 3H) = [dr, dz, dn] (pre-activation), dgn (T, B, H) = dn * r and dh0 (B, H).
// The gradient of gh (and b_hh) is dgh = [dr, dz, dgn]: it only lives one step, in a
// (B, 3H) buffer, since its r, z part is already in dxp.
//
//   dn = dh_t (1 - z)(1 - n^2),  dz = dh_t (hin - n) z (1 - z),  dr = dn gh_n r (1 - r)
//   dhin = dh_t z + dgh @ w_hh
std::tuple<Tensor, Tensor, Tensor> gru_backward(
    const Tensor& dy_, const Tensor& dhT, const Tensor& gates_, const Tensor& hin_,
    const Tensor& w_hh_, const OptTensor& valid_, const OptTensor& mask_) {
  const Tensor dy = dy_.contiguous(), gates = gates_.contiguous(), hin = hin_.contiguous();
  const Tensor w_hh = w_hh_.contiguous();
  const OptTensor valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = dy.size(0), B = dy.size(1), H = dy.size(2);
  Tensor dxp = at::empty({T, B, 3 * H}, dy.options());
  Tensor dgn = at::empty({T, B, H}, dy.options());
  Tensor dgh = at::empty({B, 3 * H}, dy.options());     // this step's
  Tensor dh = dhT.contiguous().clone();                  // gradient carried to h_{t-1}
  Tensor prod = at::empty_like(dh);
  const StepProduct product(w_hh.t(), B);                // dgh @ w_hh

  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pdy = dy.data_ptr<T_>();
    const T_* pg = gates.data_ptr<T_>();
    const T_* phin = hin.data_ptr<T_>();
    T_* pdxp = dxp.data_ptr<T_>();
    T_* pdgn = dgn.data_ptr<T_>();
    T_* pdgh = dgh.data_ptr<T_>();
    T_* pdh = dh.data_ptr<T_>();
    for (int64_t t = T - 1; t >= 0; --t) {
      with_flag(pm != nullptr, [&](auto masked) {
      for_rows(B, 4 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_ v = pv ? pv[row] : T_(1);
          const T_* G = pg + row * 4 * H;
          const T_* hi = phin + row * H;
          const T_* dyo = pdy + row * H;
          const T_* m = pm ? pm + b * H : nullptr;         // only read with a mask
          T_* dx = pdxp + row * 3 * H;
          T_* dgn_row = pdgn + row * H;
          T_* dg = pdgh + b * 3 * H;
          T_* d = pdh + b * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ r = G[j], z = G[H + j], n = G[2 * H + j], ghn = G[3 * H + j];
            const T_ g = d[j] + v * dyo[j];
            const T_ dhn = v * g;                        // into this step's new state
            const T_ dn = dhn * (T_(1) - z) * (T_(1) - n * n);
            const T_ dz = dhn * (hi[j] - n) * z * (T_(1) - z);
            const T_ dr = dn * ghn * r * (T_(1) - r);
            dx[j] = dr;
            dx[H + j] = dz;
            dx[2 * H + j] = dn;
            dg[j] = dr;
            dg[H + j] = dz;
            dg[2 * H + j] = dgn_row[j] = dn * r;
            // g - dhn passes a padded step unchanged; dhn z is the direct path to hin.
            T_ dhin = dhn * z;
            if constexpr (masked()) dhin *= m[j];
            d[j] = (g - dhn) + dhin;
          }
        }
      });
      });
      const Tensor dhin = product(dgh, prod);            // (B, H)
      if (pm) {
        add_masked<T_>(dh, dhin, pm);
      } else {
        dh.add_(dhin);
      }
    }
  });
  return {dxp, dgn, dh};
}

// reset="before". Returns y (T, B, H), gates (T, B, 3H) holding [r, z, n] per row, q
// (T, B, H) = r * hin (what the candidate's product read) and hs (T + 1, B, H).
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_before_forward(
    const Tensor& xp_, const Tensor& h0, const Tensor& w_hh, const OptTensor& valid_,
    const OptTensor& mask_) {
  const Tensor xp = xp_.contiguous();
  const OptTensor valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2) / 3;
  Tensor y = at::empty({T, B, H}, xp.options());
  Tensor gates = at::empty({T, B, 3 * H}, xp.options());
  Tensor q = at::empty({T, B, H}, xp.options());
  Tensor hs = at::empty({T + 1, B, H}, xp.options());
  hs[0].copy_(h0);
  Tensor hin_buf = mask ? at::empty({B, H}, xp.options()) : Tensor();
  Tensor grz = at::empty({B, 2 * H}, xp.options());
  Tensor gn = at::empty({B, H}, xp.options());
  const StepProduct product_rz(w_hh.narrow(0, 0, 2 * H), B);  // hin @ w_hh[r, z]^T
  const StepProduct product_n(w_hh.narrow(0, 2 * H, H), B);    // q @ w_hh[n]^T

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_before_forward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pxp = xp.data_ptr<T_>();
    T_* pg = gates.data_ptr<T_>();
    T_* pq = q.data_ptr<T_>();
    T_* py = y.data_ptr<T_>();
    T_* phs = hs.data_ptr<T_>();
    for (int64_t t = 0; t < T; ++t) {
      const Tensor hin = masked_state<T_>(hs[t], pm, hin_buf);
      const Tensor grz_t = product_rz(hin, grz);
      const T_* pgrz = grz_t.data_ptr<T_>();
      const T_* phi = hin.data_ptr<T_>();
      for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_* x = pxp + row * 3 * H;
          const T_* g = pgrz + b * 2 * H;
          const T_* hi = phi + b * H;
          T_* G = pg + row * 3 * H;
          T_* qo = pq + row * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ r = sigmoid(x[j] + g[j]);
            G[j] = r;
            G[H + j] = sigmoid(x[H + j] + g[H + j]);
            qo[j] = r * hi[j];
          }
        }
      });
      const Tensor gn_t = product_n(q[t], gn);
      const T_* pgn = gn_t.data_ptr<T_>();
      for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_ v = pv ? pv[row] : T_(1);
          const T_* x = pxp + row * 3 * H;
          const T_* g = pgn + b * H;
          const T_* hi = phi + b * H;
          const T_* hp = phs + row * H;
          T_* G = pg + row * 3 * H;
          T_* hn = phs + (row + B) * H;
          T_* yo = py + row * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ n = std::tanh(x[2 * H + j] + g[j]);
            const T_ z = G[H + j];
            const T_ h = n + z * (hi[j] - n);
            G[2 * H + j] = n;
            yo[j] = v * h;
            hn[j] = v != T_(0) ? h : hp[j];
          }
        }
      });
    }
  });
  return {y, gates, q, hs};
}

// reset="before". Returns da (T, B, 3H) = [dr, dz, dn] (pre-activation: the gradient
// of xp and of both products) and dh0 (B, H).
//
//   dn = dh_t (1 - z)(1 - n^2),  dz = dh_t (hin - n) z (1 - z)
//   dq = dn @ w_hh[n],  dr = dq hin r (1 - r)
//   dhin = dh_t z + dq r + [dr, dz] @ w_hh[r, z]
std::tuple<Tensor, Tensor> gru_before_backward(
    const Tensor& dy_, const Tensor& dhT, const Tensor& gates_, const Tensor& hin_,
    const Tensor& w_hh_, const OptTensor& valid_, const OptTensor& mask_) {
  const Tensor dy = dy_.contiguous(), gates = gates_.contiguous(), hin = hin_.contiguous();
  const Tensor w_hh = w_hh_.contiguous();
  const OptTensor valid = contiguous(valid_), mask = contiguous(mask_);
  const int64_t T = dy.size(0), B = dy.size(1), H = dy.size(2);
  Tensor da = at::empty({T, B, 3 * H}, dy.options());
  Tensor dh = dhT.contiguous().clone();
  Tensor dq = at::empty_like(dh);
  Tensor prod = at::empty_like(dh);
  const StepProduct product_rz(w_hh.narrow(0, 0, 2 * H).t(), B);  // da[r, z] @ w_hh[r, z]
  const StepProduct product_n(w_hh.narrow(0, 2 * H, H).t(), B);   // da[n] @ w_hh[n]

  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "gru_before_backward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    const T_* pdy = dy.data_ptr<T_>();
    const T_* pg = gates.data_ptr<T_>();
    const T_* phin = hin.data_ptr<T_>();
    T_* pda = da.data_ptr<T_>();
    T_* pdh = dh.data_ptr<T_>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const Tensor da_t = da[t];
      with_flag(pm != nullptr, [&](auto masked) {
      for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_ v = pv ? pv[row] : T_(1);
          const T_* G = pg + row * 3 * H;
          const T_* hi = phin + row * H;
          const T_* dyo = pdy + row * H;
          const T_* m = pm ? pm + b * H : nullptr;
          T_* a = pda + row * 3 * H;
          T_* d = pdh + b * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ z = G[H + j], n = G[2 * H + j];
            const T_ g = d[j] + v * dyo[j];
            const T_ dhn = v * g;
            a[H + j] = dhn * (hi[j] - n) * z * (T_(1) - z);
            a[2 * H + j] = dhn * (T_(1) - z) * (T_(1) - n * n);
            T_ dhin = dhn * z;
            if constexpr (masked()) dhin *= m[j];
            d[j] = (g - dhn) + dhin;
          }
        }
      });
      const Tensor dq_t = product_n(da_t.narrow(1, 2 * H, H), dq);  // (B, H): d q
      const T_* pdq = dq_t.data_ptr<T_>();
      for_rows(B, 2 * H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t row = t * B + b;
          const T_* G = pg + row * 3 * H;
          const T_* hi = phin + row * H;
          const T_* e = pdq + b * H;
          const T_* m = pm ? pm + b * H : nullptr;
          T_* a = pda + row * 3 * H;
          T_* d = pdh + b * H;
_Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            const T_ r = G[j];
            a[j] = e[j] * hi[j] * r * (T_(1) - r);
            T_ dhin = e[j] * r;
            if constexpr (masked()) dhin *= m[j];
            d[j] += dhin;
          }
        }
      });
      });
      const Tensor dhin = product_rz(da_t.narrow(1, 0, 2 * H), prod);  // (B, H)
      if (pm) {
        add_masked<T_>(dh, dhin, pm);
      } else {
        dh.add_(dhin);
      }
    }
  });
  return {da, dh};
}

}  // namespace rnnkit

TORCH_LIBRARY_FRAGMENT(rnnkit_fused, m) {
  m.def(
      "gru_forward(Tensor xp, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? valid, "
      "Tensor? mask) -> (Tensor, Tensor, Tensor)",
      &rnnkit::gru_forward);
  m.def(
      "gru_backward(Tensor dy, Tensor dhT, Tensor gates, Tensor hin, Tensor w_hh, "
      "Tensor? valid, Tensor? mask) -> (Tensor, Tensor, Tensor)",
      &rnnkit::gru_backward);
  m.def(
      "gru_before_forward(Tensor xp, Tensor h0, Tensor w_hh, Tensor? valid, Tensor? mask) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      &rnnkit::gru_before_forward);
  m.def(
      "gru_before_backward(Tensor dy, Tensor dhT, Tensor gates, Tensor hin, Tensor w_hh, "
      "Tensor? valid, Tensor? mask) -> (Tensor, Tensor)",
      &rnnkit::gru_before_backward);
}
