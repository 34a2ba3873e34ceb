// LSTM recurrence, with peepholes, layer norm and projection (gate order i, f, g, o).
//
//   hin_t = h_{t-1} * mask                          (mask: recurrent dropout, else 1)
//   a_t   = xp_t + hin_t @ w_hh^T                   (xp_t = x_t @ W_ih^T + b_ih + b_hh)
//   a_t   = LN(xw_t) * ln_ih + b + LN(hin_t @ w_hh^T) * ln_hh    (layer norm; xw_t = x_t @ W_ih^T)
//   i = sigmoid(a_i + w_ci * c_{t-1})   f = sigmoid(a_f + w_cf * c_{t-1})   g = tanh(a_g)
//   c_t = f * c_{t-1} + i * g
//   o = sigmoid(a_o + w_co * c_t)                   (peephole terms only with peepholes)
//   tc = tanh(c_t), or tanh(LN(c_t) * ln_c_weight + ln_c_bias) with layer norm
//   hr = o * tc                                     (B, H)
//   h_t = hr @ w_hr^T                               (B, P) with a projection, else hr
//
// Steps outside a sequence (valid = 0) emit zeros and carry (h, c) unchanged. The
// element-wise maths is templated on the options so each inner loop is branch-free;
// the layer norms are per row, so they run inside the same row loops, in cache.
#include <torch/library.h>

#include "common.h"

namespace rnnkit {
namespace {

// Calls fn(peephole, layer_norm) with both as std::integral_constant<bool, ...>.
template <typename F>
void with_options(bool peephole, bool layer_norm, const F& fn) {
  using Yes = std::true_type;
  using No = std::false_type;
  if (peephole) {
    if (layer_norm) return fn(Yes{}, Yes{});
    return fn(Yes{}, No{});
  }
  if (layer_norm) return fn(No{}, Yes{});
  return fn(No{}, No{});
}

// Row b of a (B, width) step slice, or nullptr for an absent tensor.
template <typename T>
inline T* row(T* p, int64_t b, int64_t width) {
  return p ? p + b * width : nullptr;
}

// Mean and 1/sqrt(var + eps) of n values (two passes: stable in float32).
template <typename T>
inline std::pair<T, T> moments(const T* v, int64_t n, double eps) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += v[j];
  const T mean = sum / T(n);
  T var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < n; ++j) var += (v[j] - mean) * (v[j] - mean);
  return {mean, T(1) / std::sqrt(var / T(n) + T(eps))};
}

// One forward step's pointers, all at this step's (B, ...) slice.
template <typename T>
struct ForwardStep {
  int64_t H{};
  double eps{};
  T* xp{};                               // (B, 4H) xp, overwritten by the gates i, f, g, o;
                                         // with layer norm xw, normalised in place (xhat)
  T* gh{};                               // (B, 4H) hin @ w_hh^T
  T* ghat{};                             // (B, 4H) layer norm: gh normalised
  const T* c_prev{};                     // (B, H)
  T* c{};                                // (B, H) carried cell state after the step
  T* hr{};                               // (B, H) o * tc: y_t, or what the projection reads
  T *rstd_ih{}, *rstd_hh{};              // (B,) layer norm: 1/std of xw and of the product
  T *mean_c{}, *rstd_c{};                // (B,) and of c
  const T* valid{};                      // (B,) or nullptr
  const T *w_ci{}, *w_cf{}, *w_co{};     // (H,) peepholes
  const T *ln_ih{}, *bias{}, *ln_hh{};   // (4H,) layer norm: gains and the gate bias
  const T *ln_cw{}, *ln_cb{};            // (H,)
};

template <bool Peep, bool LN, typename T>
void forward_rows(const ForwardStep<T>& step, int64_t b0, int64_t b1) {
  // A local copy: the compiler then knows the pointers stay put through the loops
  // (through the reference it re-reads them, and vectorises with gathers).
  const ForwardStep<T> s = step;
  const int64_t H = s.H, G = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const T* cp = s.c_prev + b * H;
    T* c = s.c + b * H;
    T* hr = s.hr + b * H;
    if (s.valid && s.valid[b] == T(0)) {  // outside the sequence: c carried, hr (y) zero
      std::copy(cp, cp + H, c);
      std::fill(hr, hr + H, T(0));
      continue;  // the backward skips this row, so nothing else needs writing
    }
    T* xp = s.xp + b * G;
    T* a = xp;  // without layer norm the gates overwrite xp: each unit reads before writing
    T* gh = LN ? s.ghat + b * G : s.gh + b * G;
    if constexpr (LN) {
      const T* prod = s.gh + b * G;
      const auto [mh, rh] = moments(prod, G, s.eps);
      const auto [mx, rx] = moments(xp, G, s.eps);
      s.rstd_hh[b] = rh;
      s.rstd_ih[b] = rx;
#pragma omp simd
      for (int64_t j = 0; j < G; ++j) {
        gh[j] = (prod[j] - mh) * rh;
        xp[j] = (xp[j] - mx) * rx;
      }
    }
    // Gate k's pre-activation: xp + ghh, or LN(xw) * ln_ih + bias + LN(ghh) * ln_hh.
    auto pre = [&](int64_t k) {
      return LN ? xp[k] * s.ln_ih[k] + s.bias[k] + gh[k] * s.ln_hh[k] : xp[k] + gh[k];
    };
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T cpj = cp[j];
      const T i = sigmoid(pre(j) + (Peep ? s.w_ci[j] * cpj : T(0)));
      const T f = sigmoid(pre(H + j) + (Peep ? s.w_cf[j] * cpj : T(0)));
      const T g = std::tanh(pre(2 * H + j));
      const T cn = f * cpj + i * g;
      c[j] = cn;
      if constexpr (!LN) {  // (with layer norm the backward recomputes the gates)
        const T o = sigmoid(pre(3 * H + j) + (Peep ? s.w_co[j] * cn : T(0)));
        a[j] = i;
        a[H + j] = f;
        a[2 * H + j] = g;
        a[3 * H + j] = o;
        hr[j] = o * std::tanh(cn);
      }
    }
    if constexpr (LN) {
      // The output reads a normalised copy of c, which needs the whole row first.
      const auto [mean, rstd] = moments(c, H, s.eps);
      s.mean_c[b] = mean;
      s.rstd_c[b] = rstd;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T o = sigmoid(pre(3 * H + j) + (Peep ? s.w_co[j] * c[j] : T(0)));
        hr[j] = o * std::tanh((c[j] - mean) * rstd * s.ln_cw[j] + s.ln_cb[j]);
      }
    }
  }
}

// Offsets of the parameter gradients summed over (T, B) in one thread's partial sums.
struct SumLayout {
  int64_t ci = -1, cf = -1, co = -1;          // peepholes (H each)
  int64_t ln_ih = -1, bias = -1, ln_hh = -1;  // layer norm (4H each)
  int64_t ln_cw = -1, ln_cb = -1;             // layer norm (H each)
  int64_t width = 0;
  SumLayout(int64_t H, bool peep, bool ln) {
    auto take = [&](int64_t n) { return (width += n) - n; };
    if (peep) ci = take(H), cf = take(H), co = take(H);
    if (ln) ln_ih = take(4 * H), bias = take(4 * H), ln_hh = take(4 * H);
    if (ln) ln_cw = take(H), ln_cb = take(H);
  }
};

// One backward step's pointers, all at this step's (B, ...) slice.
template <typename T>
struct BackwardStep {
  int64_t H{};
  SumLayout offs;                        // where each parameter's sums live in `sums`
  T* sums{};                             // (threads, offs.width) partial sums, a row each
  const T* act{};                        // (B, 4H) gates i, f, g, o (without layer norm)
  const T* c_prev{};                     // (B, H)
  const T* c{};                          // (B, H) the step's new c
  const T* xhat{};                       // (B, 4H) layer norm: normalised xw
  const T* ghat{};                       // (B, 4H) layer norm: normalised product
  const T *rstd_ih{}, *rstd_hh{};        // (B,) layer norm
  const T *mean_c{}, *rstd_c{};          // (B,)
  const T* dhr{};                        // (B, H) projection: d hr from its product
  T* dh{};                               // (B, H) no projection: carried dh, zeroed where used
  const T* dy{};                         // (B, H) no projection
  T* dc{};                               // (B, H) carried dc: d c_t in, d c_{t-1} out
  T* dxp{};                              // (B, 4H) d xp (d xw with layer norm); first d a
  T* dghh{};                             // (B, 4H) layer norm: d (hin @ w_hh^T), else dxp
  const T* valid{};                      // (B,) or nullptr
  const T *w_ci{}, *w_cf{}, *w_co{};     // (H,)
  const T *ln_ih{}, *bias{}, *ln_hh{};   // (4H,)
  const T *ln_cw{}, *ln_cb{};            // (H,)
};

// From d c_t (dcj, all paths summed) to the gate gradients of i, f, g and d c_{t-1}
// (dg[3H + j], d a_o, is already there), adding the peepholes' sums to acc.
template <bool Peep, typename T>
inline void cell_grads(const BackwardStep<T>& s, T i, T f, T g, const T* cp, const T* c, T* dg,
                       T* dc, T* acc, int64_t j, T dcj) {
  const int64_t H = s.H;
  const T dgi = dcj * g * i * (T(1) - i);
  const T dgf = dcj * cp[j] * f * (T(1) - f);
  dg[j] = dgi;
  dg[H + j] = dgf;
  dg[2 * H + j] = dcj * i * (T(1) - g * g);
  dc[j] = dcj * f + (Peep ? dgi * s.w_ci[j] + dgf * s.w_cf[j] : T(0));
  if constexpr (Peep) {
    acc[s.offs.ci + j] += dgi * cp[j];
    acc[s.offs.cf + j] += dgf * cp[j];
    acc[s.offs.co + j] += dg[3 * H + j] * c[j];
  }
}

template <bool Peep, bool LN, bool Proj, typename T>
void backward_rows(const BackwardStep<T>& step, int64_t b0, int64_t b1) {
  const BackwardStep<T> s = step;  // a local copy, as in forward_rows
  const int64_t H = s.H, G = 4 * H;
  // This thread's partial sums: rows of a step may be split over threads.
  T* acc = s.sums + at::get_thread_num() * s.offs.width;
  for (int64_t b = b0; b < b1; ++b) {
    T* dg = s.dxp + b * G;
    if (s.valid && s.valid[b] == T(0)) {  // dh and dc pass a padded step unchanged
      std::fill(dg, dg + G, T(0));
      if (LN) std::fill(s.dghh + b * G, s.dghh + (b + 1) * G, T(0));
      continue;
    }
    const T* cp = s.c_prev + b * H;
    const T* c = s.c + b * H;
    T* dc = s.dc + b * H;
    const T* dhr = Proj ? s.dhr + b * H : nullptr;
    T* dh = Proj ? nullptr : s.dh + b * H;
    const T* dy = Proj ? nullptr : s.dy + b * H;
    if constexpr (LN) {
      // The gates and tc = tanh(chat * ln_cw + ln_cb), chat = (c - mean) * rstd, are
      // recomputed here rather than kept (fresh memory costs more than the maths).
      const T* xh = s.xhat + b * G;
      const T* gh = s.ghat + b * G;
      auto pre = [&](int64_t k) { return xh[k] * s.ln_ih[k] + s.bias[k] + gh[k] * s.ln_hh[k]; };
      const T mean = s.mean_c[b], rstd = s.rstd_c[b];
      T* acc_cw = acc + s.offs.ln_cw;
      T* acc_cb = acc + s.offs.ln_cb;
      T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t j = 0; j < H; ++j) {
        const T d = Proj ? dhr[j] : dh[j] + dy[j];  // d hr
        const T o = sigmoid(pre(3 * H + j) + (Peep ? s.w_co[j] * c[j] : T(0)));
        const T ch = (c[j] - mean) * rstd;
        const T t = std::tanh(ch * s.ln_cw[j] + s.ln_cb[j]);
        dg[3 * H + j] = d * t * o * (T(1) - o);
        const T dz = d * o * (T(1) - t * t);
        dg[j] = dz;  // parked in d a_i's slot until the loop below
        acc_cw[j] += dz * ch;
        acc_cb[j] += dz;
        s1 += dz * s.ln_cw[j];
        s2 += dz * s.ln_cw[j] * ch;
      }
      const T m1 = s1 / T(H), m2 = s2 / T(H);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        if constexpr (!Proj) dh[j] = T(0);  // all of it flowed into this step
        const T ch = (c[j] - mean) * rstd;
        const T dcn = rstd * (dg[j] * s.ln_cw[j] - m1 - ch * m2);  // through LN(c)
        const T i = sigmoid(pre(j) + (Peep ? s.w_ci[j] * cp[j] : T(0)));
        const T f = sigmoid(pre(H + j) + (Peep ? s.w_cf[j] * cp[j] : T(0)));
        const T g = std::tanh(pre(2 * H + j));
        cell_grads<Peep>(s, i, f, g, cp, c, dg, dc, acc, j,
                         dc[j] + dcn + (Peep ? dg[3 * H + j] * s.w_co[j] : T(0)));
      }
      // Back through a = LN(xw) * ln_ih + bias + LN(ghh) * ln_hh to xw and ghh.
      T* dghh = s.dghh + b * G;
      T* acc_ih = acc + s.offs.ln_ih;
      T* acc_b = acc + s.offs.bias;
      T* acc_hh = acc + s.offs.ln_hh;
      T q1 = 0, q2 = 0, r1 = 0, r2 = 0;
#pragma omp simd reduction(+ : q1, q2, r1, r2)
      for (int64_t j = 0; j < G; ++j) {
        q1 += dg[j] * s.ln_ih[j];
        q2 += dg[j] * s.ln_ih[j] * xh[j];
        r1 += dg[j] * s.ln_hh[j];
        r2 += dg[j] * s.ln_hh[j] * gh[j];
        acc_ih[j] += dg[j] * xh[j];
        acc_b[j] += dg[j];
        acc_hh[j] += dg[j] * gh[j];
      }
      const T rx = s.rstd_ih[b], p1 = q1 / T(G), p2 = q2 / T(G);
      const T rh = s.rstd_hh[b], n1 = r1 / T(G), n2 = r2 / T(G);
#pragma omp simd
      for (int64_t j = 0; j < G; ++j) {
        dghh[j] = rh * (dg[j] * s.ln_hh[j] - n1 - gh[j] * n2);
        dg[j] = rx * (dg[j] * s.ln_ih[j] - p1 - xh[j] * p2);  // d a -> d xw, in place
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T d = Proj ? dhr[j] : dh[j] + dy[j];
        if constexpr (!Proj) dh[j] = T(0);
        const T* a = s.act + b * G;
        const T o = a[3 * H + j], t = std::tanh(c[j]);  // tanh(c) recomputed, not kept
        const T dgo = d * t * o * (T(1) - o);
        dg[3 * H + j] = dgo;
        cell_grads<Peep>(s, a[j], a[H + j], a[2 * H + j], cp, c, dg, dc, acc, j,
                         dc[j] + d * o * (T(1) - t * t) + (Peep ? dgo * s.w_co[j] : T(0)));
      }
    }
  }
}

}  // namespace

// Runs the recurrence over xp (T, B, 4H), which it overwrites for the backward: with
// the gates i, f, g, o, or with layer norm (xp is then xw = x @ W_ih^T, and bias is
// b_ih + b_hh or None) with the normalised xw. xp is a temporary of the caller's, and
// fresh (T, B, 4H) buffers cost page faults on every call.
// valid must be a prefix of each row (right padding): past a sequence's end the
// product reads y's zeros instead of the carried state, and its rows are thrown away.
// Returns y (T, B, R), the final h (B, R) and c (B, H), and what the backward reads:
// c_all (T, B, H) the carried c, hin (T, B, R) what each product read, hr (T, B, H)
// (projection only), and with layer norm ghat (T, B, 4H), the normalised product, and
// stats (4, T, B): 1/std of xw and of the product, mean and 1/std of c. Absent ones
// are undefined.
std::vector<Tensor> lstm_forward(
    Tensor& xp, const Tensor& h0, const Tensor& c0_, const Tensor& w_hh,
    const OptTensor& w_hr_, const OptTensor& w_ci_, const OptTensor& w_cf_,
    const OptTensor& w_co_, const OptTensor& ln_ih_, const OptTensor& bias_,
    const OptTensor& ln_hh_, const OptTensor& ln_cw_, const OptTensor& ln_cb_, double eps,
    const OptTensor& valid_, const OptTensor& mask_) {
  TORCH_CHECK(xp.is_contiguous(), "lstm_forward: xp must be contiguous (it is overwritten)");
  const Tensor c0 = c0_.contiguous();
  const OptTensor w_hr = contiguous(w_hr_), w_ci = contiguous(w_ci_), w_cf = contiguous(w_cf_),
                  w_co = contiguous(w_co_), ln_ih = contiguous(ln_ih_),
                  ln_hh = contiguous(ln_hh_), ln_cw = contiguous(ln_cw_),
                  ln_cb = contiguous(ln_cb_), valid = contiguous(valid_),
                  mask = contiguous(mask_);
  const bool proj = w_hr.has_value(), peep = w_ci.has_value(), ln = ln_hh.has_value();
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), H = G / 4, R = h0.size(1);
  const auto opts = xp.options();
  const Tensor bias = !ln ? Tensor() : bias_ ? bias_->contiguous() : at::zeros({G}, opts);
  // hs[0] = h0, hs[t + 1] = y_t: without a mask each step's product reads hs[t] (the
  // carried state wherever the step is inside its sequence; rows after a sequence's
  // end, where y is zero, are thrown away).
  Tensor hs = at::empty({T + 1, B, R}, opts);
  hs[0].copy_(h0);
  const Tensor y = hs.narrow(0, 1, T);
  Tensor hin = mask ? at::empty({T, B, R}, opts) : hs.narrow(0, 0, T);
  Tensor c_all = at::empty({T, B, H}, opts);
  Tensor hr = proj ? at::empty({T, B, H}, opts) : Tensor();
  Tensor ghat = ln ? at::empty({T, B, G}, opts) : Tensor();
  Tensor stats = ln ? at::empty({4, T, B}, opts) : Tensor();
  Tensor gh = at::empty({B, G}, opts);  // the product, where at::mm writes it
  Tensor h = h0.contiguous().clone();    // carried state (B, R)
  const StepProduct hh(w_hh, B);
  const std::optional<StepProduct> hr_proj =
      proj ? std::optional<StepProduct>(std::in_place, *w_hr, B) : std::nullopt;

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "lstm_forward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    ForwardStep<T_> s{H, eps};
    s.w_ci = maybe_ptr<T_>(w_ci), s.w_cf = maybe_ptr<T_>(w_cf), s.w_co = maybe_ptr<T_>(w_co);
    s.ln_ih = maybe_ptr<T_>(ln_ih), s.bias = maybe_ptr<T_>(bias);
    s.ln_hh = maybe_ptr<T_>(ln_hh), s.ln_cw = maybe_ptr<T_>(ln_cw), s.ln_cb = maybe_ptr<T_>(ln_cb);
    T_* ph = h.data_ptr<T_>();
    // Step t's slice of a (T, B, n) tensor, by pointer: no per-step tensor objects.
    auto at_step = [&](const Tensor& x, int64_t t, int64_t n) {
      return x.data_ptr<T_>() + t * B * n;
    };
    if (pm) {
      T_* pi = hin.data_ptr<T_>();
      for (int64_t k = 0; k < B * R; ++k) pi[k] = ph[k] * pm[k];
    }
    for (int64_t t = 0; t < T; ++t) {
      const Tensor gh_t = hh(hin[t], gh);  // (B, 4H)
      s.xp = at_step(xp, t, G);
      s.gh = gh_t.data_ptr<T_>();
      if (ln) {
        s.ghat = at_step(ghat, t, G);  // layer norm keeps every step's normalised product
        s.rstd_ih = at_step(stats, t, 1);
        s.rstd_hh = at_step(stats, T + t, 1);
        s.mean_c = at_step(stats, 2 * T + t, 1);
        s.rstd_c = at_step(stats, 3 * T + t, 1);
      }
      s.c_prev = t ? at_step(c_all, t - 1, H) : c0.data_ptr<T_>();
      s.c = at_step(c_all, t, H);
      s.hr = proj ? at_step(hr, t, H) : at_step(y, t, R);
      s.valid = pv ? pv + t * B : nullptr;
      with_options(peep, ln, [&](auto Peep, auto LN) {
        for_rows(B, G, [&](int64_t b0, int64_t b1) { forward_rows<Peep(), LN()>(s, b0, b1); });
      });
      if (proj) {
        Tensor y_t = y[t];
        const Tensor p = (*hr_proj)(hr[t], y_t);  // zero rows stay zero
        if (!p.is_same(y_t)) y_t.copy_(p);
      }
      // The carried state where the step is inside its sequence, and with a mask what
      // the next step reads.
      const T_* py = at_step(y, t, R);
      T_* pn = pm && t + 1 < T ? at_step(hin, t + 1, R) : nullptr;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * R;
        if (!s.valid || s.valid[b] != T_(0)) std::copy(py + r, py + r + R, ph + r);
        if (!pn) continue;
_Pragma("omp simd")
        for (int64_t j = 0; j < R; ++j) pn[r + j] = ph[r + j] * pm[r + j];
      }
    }
  });
  Tensor c_last = T > 0 ? c_all[T - 1].clone() : c0.clone();
  return {y, h, c_last, c_all, hin, hr, ghat, stats};
}

// Returns d xp (T, B, 4H) (d xw with layer norm), dh0 (B, R), dc0 (B, H), the weight
// gradients dw_hh (4H, R) and dw_hr (P, H) (each only when asked for), and the sums
// over (T, B) for dw_ci, dw_cf, dw_co (peepholes) and d ln_ih, d bias, d ln_hh,
// d ln_c_weight, d ln_c_bias (layer norm); absent ones are undefined. xp is the
// forward's xp after the call: the gates, or with layer norm the normalised xw.
std::vector<Tensor> lstm_backward(
    const Tensor& dy_, const Tensor& dhT, const Tensor& dcT, const Tensor& c0_,
    const Tensor& xp_, const Tensor& c_all_, const Tensor& hin_, const OptTensor& hr_,
    const OptTensor& ghat_, const OptTensor& stats_, const Tensor& w_hh_,
    const OptTensor& w_hr_, const OptTensor& w_ci_, const OptTensor& w_cf_,
    const OptTensor& w_co_, const OptTensor& ln_ih_, const OptTensor& bias_,
    const OptTensor& ln_hh_, const OptTensor& ln_cw_, const OptTensor& ln_cb_,
    const OptTensor& valid_, const OptTensor& mask_, bool need_w_hh, bool need_w_hr) {
  const Tensor dy = dy_.contiguous(), c0 = c0_.contiguous(), xp = xp_.contiguous();
  const Tensor c_all = c_all_.contiguous(), hin = hin_.contiguous();
  const Tensor w_hh = w_hh_.contiguous();
  const OptTensor hr = contiguous(hr_), ghat = contiguous(ghat_), stats = contiguous(stats_),
                  w_hr = contiguous(w_hr_), w_ci = contiguous(w_ci_), w_cf = contiguous(w_cf_),
                  w_co = contiguous(w_co_), ln_ih = contiguous(ln_ih_),
                  ln_hh = contiguous(ln_hh_), ln_cw = contiguous(ln_cw_),
                  ln_cb = contiguous(ln_cb_), valid = contiguous(valid_),
                  mask = contiguous(mask_);
  const bool proj = w_hr.has_value(), peep = w_ci.has_value(), ln = ln_hh.has_value();
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), H = G / 4;
  const int64_t R = dhT.size(1);
  const auto opts = xp.options();
  const Tensor bias = !ln ? Tensor() : bias_ ? bias_->contiguous() : at::zeros({G}, opts);
  const SumLayout layout(H, peep, ln);
  Tensor sums = at::zeros({at::get_num_threads(), layout.width}, opts);
  Tensor dxp = at::empty_like(xp);
  // d of the product hin @ w_hh^T: dxp itself, or with layer norm a buffer for `chunk`
  // steps (a few hundred rows), whose part of dw_hh is added before it is reused: a
  // second (T, B, 4H) buffer would cost more in fresh memory than the extra products.
  const int64_t chunk =
      ln ? std::clamp<int64_t>(512 / std::max<int64_t>(B, 1), 1, std::max<int64_t>(T, 1)) : T;
  Tensor dghh = ln ? at::empty({chunk, B, G}, opts) : dxp;
  Tensor dw_hh = need_w_hh ? at::zeros({G, R}, opts) : Tensor();
  Tensor dhp = proj ? at::empty({T, B, R}, opts) : Tensor();
  Tensor dhr = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dh = dhT.contiguous().clone();  // gradient carried to h_{t-1} (B, R)
  Tensor dc = dcT.contiguous().clone();  // and to c_{t-1} (B, H)
  Tensor prod = at::empty({B, R}, opts);  // where at::mm writes the step products
  const StepProduct hh_t(w_hh.t(), B);    // d ghh @ w_hh
  const std::optional<StepProduct> hr_t =
      proj ? std::optional<StepProduct>(std::in_place, w_hr->t(), B) : std::nullopt;

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "lstm_backward", [&] {
    using T_ = scalar_t;
    const T_* pm = maybe_ptr<T_>(mask);
    const T_* pv = maybe_ptr<T_>(valid);
    BackwardStep<T_> s{H, layout, sums.data_ptr<T_>()};
    s.w_ci = maybe_ptr<T_>(w_ci), s.w_cf = maybe_ptr<T_>(w_cf), s.w_co = maybe_ptr<T_>(w_co);
    s.ln_ih = maybe_ptr<T_>(ln_ih), s.bias = maybe_ptr<T_>(bias);
    s.ln_hh = maybe_ptr<T_>(ln_hh), s.ln_cw = maybe_ptr<T_>(ln_cw), s.ln_cb = maybe_ptr<T_>(ln_cb);
    s.dc = dc.data_ptr<T_>();
    T_* pdh = dh.data_ptr<T_>();
    auto at_step = [&](const Tensor& x, int64_t t, int64_t n) {
      return x.data_ptr<T_>() + t * B * n;
    };
    for (int64_t t = T - 1; t >= 0; --t) {
      Tensor dhr_t;
      s.valid = pv ? pv + t * B : nullptr;
      const T_* pdy = at_step(dy, t, R);
      if (proj) {
        // dhp = d h_t, all of which flows into this step where it is inside its sequence.
        T_* pp = at_step(dhp, t, R);
        for (int64_t b = 0; b < B; ++b) {
          const bool v = !s.valid || s.valid[b] != T_(0);
          const int64_t r = b * R;
_Pragma("omp simd")
          for (int64_t j = 0; j < R; ++j) {
            pp[r + j] = v ? pdh[r + j] + pdy[r + j] : T_(0);
            pdh[r + j] = v ? T_(0) : pdh[r + j];
          }
        }
        dhr_t = (*hr_t)(dhp[t], dhr);  // (B, H), alive until the step's end
        s.dhr = dhr_t.data_ptr<T_>();
      } else {
        s.dh = pdh;
        s.dy = pdy;
      }
      s.act = at_step(xp, t, G);
      s.xhat = at_step(xp, t, G);
      s.c_prev = t ? at_step(c_all, t - 1, H) : c0.data_ptr<T_>();
      s.c = at_step(c_all, t, H);
      s.dxp = at_step(dxp, t, G);
      if (ln) {
        s.ghat = at_step(*ghat, t, G);
        s.rstd_ih = at_step(*stats, t, 1);
        s.rstd_hh = at_step(*stats, T + t, 1);
        s.mean_c = at_step(*stats, 2 * T + t, 1);
        s.rstd_c = at_step(*stats, 3 * T + t, 1);
        s.dghh = at_step(dghh, t % chunk, G);
      }
      with_options(peep, ln, [&](auto Peep, auto LN) {
        for_rows(B, G, [&](int64_t b0, int64_t b1) {
          if (proj) {
            backward_rows<Peep(), LN(), true>(s, b0, b1);
          } else {
            backward_rows<Peep(), LN(), false>(s, b0, b1);
          }
        });
      });
      // d hin through the product, into the carried dh (zero rows outside sequences).
      const Tensor p = hh_t(dghh[t % chunk], prod);
      if (pm) {
        add_masked<T_>(dh, p, pm);
      } else {
        dh.add_(p);
      }
      if (ln && need_w_hh && t % chunk == 0) {  // steps t .. t + n - 1 are in the buffer
        const int64_t n = std::min(chunk, T - t);
        matmul(dw_hh, dghh.narrow(0, 0, n).view({n * B, G}).t(),
               hin.narrow(0, t, n).view({n * B, R}), /*accumulate=*/true);
      }
    }
  });
  // Weight gradients: one product each over all T·B rows.
  if (!ln && need_w_hh) matmul(dw_hh, dghh.view({T * B, G}).t(), hin.view({T * B, R}));
  Tensor dw_hr;
  if (proj && need_w_hr) {
    dw_hr = at::empty({R, H}, opts);
    matmul(dw_hr, dhp.view({T * B, R}).t(), hr->view({T * B, H}));
  }
  const Tensor total = sums.sum(0);
  auto part = [&](int64_t offset, int64_t n) {
    return offset < 0 ? Tensor() : total.narrow(0, offset, n);
  };
  return {dxp,
          dh,
          dc,
          dw_hh,
          dw_hr,
          part(layout.ci, H),
          part(layout.cf, H),
          part(layout.co, H),
          part(layout.ln_ih, G),
          part(layout.bias, G),
          part(layout.ln_hh, G),
          part(layout.ln_cw, H),
          part(layout.ln_cb, H)};
}

}  // namespace rnnkit

TORCH_LIBRARY_FRAGMENT(rnnkit_fused, m) {
  m.def(
      "lstm_forward(Tensor(a!) xp, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_hr, "
      "Tensor? w_ci, Tensor? w_cf, Tensor? w_co, Tensor? ln_ih_weight, Tensor? bias, "
      "Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, float eps, "
      "Tensor? valid, Tensor? mask) -> Tensor[]",
      &rnnkit::lstm_forward);
  m.def(
      "lstm_backward(Tensor dy, Tensor dhT, Tensor dcT, Tensor c0, Tensor xp, Tensor c_all, "
      "Tensor hin, Tensor? hr, Tensor? ghat, Tensor? stats, Tensor w_hh, Tensor? w_hr, "
      "Tensor? w_ci, Tensor? w_cf, Tensor? w_co, Tensor? ln_ih_weight, Tensor? bias, "
      "Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, Tensor? valid, "
      "Tensor? mask, bool need_w_hh, bool need_w_hr) -> Tensor[]",
      &rnnkit::lstm_backward);
}
