// Fused two-stage bilinear mask resize (+ threshold); see postprocess_masks_kernel.h.
// Per output coordinate (rows and columns separately) the composition of the two bilinear steps is
// precomputed once per call as <= 4 (low-res index, weight) taps. Output row Y then is
//   out[Y, :] = sum_t wy_t * xrow(k_t)[:],   xrow(k)[X] = sum_s wx_{X,s} * masks[k, kx_{X,s}]
// where the x-interpolated low-res rows xrow(k) (W0 floats) are computed lazily and kept in a small
// per-thread cache (taps are monotone in Y, so each low-res row is x-interpolated ~once per thread).
// AVX2 x-pass: 8 outputs whose taps fall in an 8-wide window use one load + 4 lane permutes.
#include "cpu/postprocess_masks_kernel.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"

namespace samfast::cpu {
namespace {

constexpr int kTaps = 4;

// Taps of one resized axis: for output d, idx[d*4+t], wt[d*4+t] (unused taps: weight 0, idx valid).
struct AxisTaps {
  std::vector<int32_t> idx, n;
  std::vector<float> wt;
};

// PyTorch upsample_bilinear (align_corners=False, size given): source index + lambda, clamped.
void linear_src(int64_t in, int64_t out, int64_t dst, int64_t& i0, int64_t& i1, double& l0, double& l1) {
  const double scale = double(in) / double(out);
  double s = (double(dst) + 0.5) * scale - 0.5;
  if (s < 0) s = 0;
  i0 = std::min<int64_t>(static_cast<int64_t>(s), in - 1);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
  l1 = std::min(std::max(s - double(i0), 0.0), 1.0);
  l0 = 1.0 - l1;
}

// low -> img (stage 1), crop to `crop`, crop -> out (stage 2), composed.
AxisTaps compose_taps(int64_t low, int64_t img, int64_t crop, int64_t out) {
  AxisTaps t;
  t.idx.resize(out * kTaps);
  t.wt.resize(out * kTaps);
  t.n.resize(out);
  for (int64_t d = 0; d < out; ++d) {
    int64_t j[2], k[2];
    double a[2], b[2];
    linear_src(crop, out, d, j[0], j[1], a[0], a[1]);
    int64_t ki[kTaps];
    double kw[kTaps];
    int n = 0;
    for (int s = 0; s < 2; ++s) {
      linear_src(low, img, j[s], k[0], k[1], b[0], b[1]);
      for (int r = 0; r < 2; ++r) {
        const double wgt = a[s] * b[r];
        if (wgt == 0.0) continue;
        int f = 0;
        while (f < n && ki[f] != k[r]) ++f;
        if (f == n) { ki[n] = k[r]; kw[n] = 0.0; ++n; }
        kw[f] += wgt;
      }
    }
    if (n == 0) { ki[0] = 0; kw[0] = 0.0; n = 1; }  // cannot happen (weights sum to 1), kept safe
    for (int x = 1; x < n; ++x)  // sort taps by index (insertion sort, n <= 4)
      for (int y = x; y > 0 && ki[y - 1] > ki[y]; --y) { std::swap(ki[y - 1], ki[y]); std::swap(kw[y - 1], kw[y]); }
    t.n[d] = n;
    for (int q = 0; q < kTaps; ++q) {
      t.idx[d * kTaps + q] = static_cast<int32_t>(q < n ? ki[q] : ki[0]);
      t.wt[d * kTaps + q] = q < n ? static_cast<float>(kw[q]) : 0.f;
    }
  }
  return t;
}

// AVX2 x-pass blocks of 8 outputs: base column + per-tap lane indices (relative to base) + weights.
struct XBlocks {
  int64_t nb = 0;
  std::vector<int32_t> base, ok, lidx;  // lidx/lw: [nb][4 taps][8 lanes]
  std::vector<float> lw;
};

XBlocks make_xblocks(const AxisTaps& tx, int64_t W0) {
  XBlocks xb;
  xb.nb = W0 / 8;
  xb.base.resize(xb.nb); xb.ok.resize(xb.nb); xb.lidx.resize(xb.nb * 32); xb.lw.resize(xb.nb * 32);
  for (int64_t b = 0; b < xb.nb; ++b) {
    int32_t lo = tx.idx[b * 8 * kTaps], hi = lo;
    for (int64_t i = b * 8 * kTaps; i < (b + 1) * 8 * kTaps; ++i) {
      lo = std::min(lo, tx.idx[i]);
      hi = std::max(hi, tx.idx[i]);
    }
    xb.base[b] = lo;
    xb.ok[b] = hi - lo < 8;
    for (int t = 0; t < kTaps; ++t)
      for (int l = 0; l < 8; ++l) {
        const int64_t src = (b * 8 + l) * kTaps + t;
        xb.lidx[b * 32 + t * 8 + l] = tx.idx[src] - lo;
        xb.lw[b * 32 + t * 8 + l] = tx.wt[src];
      }
  }
  return xb;
}

inline float xtap(const float* row, const AxisTaps& tx, int64_t X) {
  const int32_t* i = &tx.idx[X * kTaps];
  const float* w = &tx.wt[X * kTaps];
  return w[0] * row[i[0]] + w[1] * row[i[1]] + w[2] * row[i[2]] + w[3] * row[i[3]];
}

void xpass_base(const float* row, const AxisTaps& tx, int64_t W0, float* dst) {
  for (int64_t X = 0; X < W0; ++X) dst[X] = xtap(row, tx, X);
}

void ycombine_base(const float* const* rows, const float* wy, int n, int64_t W0, float* dst) {
  for (int64_t X = 0; X < W0; ++X) {
    float acc = wy[0] * rows[0][X];
    for (int t = 1; t < n; ++t) acc += wy[t] * rows[t][X];
    dst[X] = acc;
  }
}

#if SAMFAST_X86
// `row` is padded with >= 8 readable floats past the last column.
SAMFAST_AVX2 void xpass_avx2(const float* row, const AxisTaps& tx, const XBlocks& xb, int64_t W0, float* dst) {
  for (int64_t b = 0; b < xb.nb; ++b) {
    if (!xb.ok[b]) {
      for (int64_t X = b * 8; X < b * 8 + 8; ++X) dst[X] = xtap(row, tx, X);
      continue;
    }
    const __m256 v = _mm256_loadu_ps(row + xb.base[b]);
    const int32_t* li = &xb.lidx[b * 32];
    const float* lw = &xb.lw[b * 32];
    __m256 acc = _mm256_mul_ps(_mm256_permutevar8x32_ps(v, _mm256_loadu_si256((const __m256i*)li)), _mm256_loadu_ps(lw));
    for (int t = 1; t < kTaps; ++t)
      acc = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(v, _mm256_loadu_si256((const __m256i*)(li + 8 * t))),
                            _mm256_loadu_ps(lw + 8 * t), acc);
    _mm256_storeu_ps(dst + b * 8, acc);
  }
  for (int64_t X = xb.nb * 8; X < W0; ++X) dst[X] = xtap(row, tx, X);
}

SAMFAST_AVX2 void ycombine_avx2(const float* const* rows, const float* wy, int n, int64_t W0, float* dst) {
  int64_t X = 0;
  const __m256 w0 = _mm256_set1_ps(wy[0]), w1 = _mm256_set1_ps(n > 1 ? wy[1] : 0.f);
  const __m256 w2 = _mm256_set1_ps(n > 2 ? wy[2] : 0.f), w3 = _mm256_set1_ps(n > 3 ? wy[3] : 0.f);
  if (n == 2) {
    for (; X + 8 <= W0; X += 8)
      _mm256_storeu_ps(dst + X, _mm256_fmadd_ps(w1, _mm256_loadu_ps(rows[1] + X),
                                                _mm256_mul_ps(w0, _mm256_loadu_ps(rows[0] + X))));
  } else {
    for (; X + 8 <= W0; X += 8) {
      __m256 acc = _mm256_mul_ps(w0, _mm256_loadu_ps(rows[0] + X));
      if (n > 1) acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(rows[1] + X), acc);
      if (n > 2) acc = _mm256_fmadd_ps(w2, _mm256_loadu_ps(rows[2] + X), acc);
      if (n > 3) acc = _mm256_fmadd_ps(w3, _mm256_loadu_ps(rows[3] + X), acc);
      _mm256_storeu_ps(dst + X, acc);
    }
  }
  for (; X < W0; ++X) {
    float acc = wy[0] * rows[0][X];
    for (int t = 1; t < n; ++t) acc += wy[t] * rows[t][X];
    dst[X] = acc;
  }
}

constexpr std::array<uint64_t, 256> make_bool_lut() {
  std::array<uint64_t, 256> lut{};
  for (int m = 0; m < 256; ++m)
    for (int b = 0; b < 8; ++b)
      if (m & (1 << b)) lut[m] |= uint64_t(1) << (8 * b);  // little endian: byte b = lane b
  return lut;
}
constexpr std::array<uint64_t, 256> kBoolLut = make_bool_lut();

SAMFAST_AVX2 void threshold_avx2(const float* src, int64_t W0, float thr, uint8_t* dst) {
  const __m256 t = _mm256_set1_ps(thr);
  int64_t X = 0;
  for (; X + 8 <= W0; X += 8) {
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + X), t, _CMP_GT_OQ));
    std::memcpy(dst + X, &kBoolLut[m], 8);
  }
  for (; X < W0; ++X) dst[X] = src[X] > thr;
}
#endif

#if SAMFAST_X86
// ycombine_avx2 + threshold_avx2 in one pass (bool output without stability statistics): the combined row never
// goes through memory. Same products and sums as ycombine_avx2, so the same bits.
SAMFAST_AVX2 void ycombine_threshold_avx2(const float* const* rows, const float* wy, int n, int64_t W0, float thr,
                                          uint8_t* dst) {
  const __m256 w0 = _mm256_set1_ps(wy[0]), w1 = _mm256_set1_ps(n > 1 ? wy[1] : 0.f);
  const __m256 w2 = _mm256_set1_ps(n > 2 ? wy[2] : 0.f), w3 = _mm256_set1_ps(n > 3 ? wy[3] : 0.f);
  const __m256 t = _mm256_set1_ps(thr);
  int64_t X = 0;
  for (; X + 8 <= W0; X += 8) {
    __m256 acc;
    if (n == 2) {
      acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(rows[1] + X), _mm256_mul_ps(w0, _mm256_loadu_ps(rows[0] + X)));
    } else {
      acc = _mm256_mul_ps(w0, _mm256_loadu_ps(rows[0] + X));
      if (n > 1) acc = _mm256_fmadd_ps(w1, _mm256_loadu_ps(rows[1] + X), acc);
      if (n > 2) acc = _mm256_fmadd_ps(w2, _mm256_loadu_ps(rows[2] + X), acc);
      if (n > 3) acc = _mm256_fmadd_ps(w3, _mm256_loadu_ps(rows[3] + X), acc);
    }
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(acc, t, _CMP_GT_OQ));
    std::memcpy(dst + X, &kBoolLut[m], 8);
  }
  for (; X < W0; ++X) {
    float acc = wy[0] * rows[0][X];
    for (int k = 1; k < n; ++k) acc += wy[k] * rows[k][X];
    dst[X] = acc > thr;
  }
}
#endif

#if SAMFAST_X86
// ycombine_threshold_avx2 on 16 lanes (the same products and sums, so the same bits): the compare's mask becomes 16
// bool bytes through a masked broadcast and a narrowing move (AVX-512F only).
SAMFAST_AVX512 void ycombine_threshold_avx512(const float* const* rows, const float* wy, int n, int64_t W0, float thr,
                                              uint8_t* dst) {
  const __m512 w0 = _mm512_set1_ps(wy[0]), w1 = _mm512_set1_ps(n > 1 ? wy[1] : 0.f);
  const __m512 w2 = _mm512_set1_ps(n > 2 ? wy[2] : 0.f), w3 = _mm512_set1_ps(n > 3 ? wy[3] : 0.f);
  const __m512 t = _mm512_set1_ps(thr);
  int64_t X = 0;
  for (; X + 16 <= W0; X += 16) {
    __m512 acc;
    if (n == 2) {
      acc = _mm512_fmadd_ps(w1, _mm512_loadu_ps(rows[1] + X), _mm512_mul_ps(w0, _mm512_loadu_ps(rows[0] + X)));
    } else {
      acc = _mm512_mul_ps(w0, _mm512_loadu_ps(rows[0] + X));
      if (n > 1) acc = _mm512_fmadd_ps(w1, _mm512_loadu_ps(rows[1] + X), acc);
      if (n > 2) acc = _mm512_fmadd_ps(w2, _mm512_loadu_ps(rows[2] + X), acc);
      if (n > 3) acc = _mm512_fmadd_ps(w3, _mm512_loadu_ps(rows[3] + X), acc);
    }
    const __mmask16 m = _mm512_cmp_ps_mask(acc, t, _CMP_GT_OQ);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + X), _mm512_cvtepi32_epi8(_mm512_maskz_set1_epi32(m, 1)));
  }
  if (X < W0) {  // the last W0 % 16 columns as the AVX2 version does them
    const float* rest[kTaps];
    for (int k = 0; k < n; ++k) rest[k] = rows[k] + X;
    ycombine_threshold_avx2(rest, wy, n, W0 - X, thr, dst + X);
  }
}
#endif

// Statistics of one output row: counts above the stability thresholds, first / last column > thr.
struct RowStats {
  int32_t n_hi = 0, n_lo = 0, x0 = -1, x1 = -1;
};

inline void threshold_stats_base(const float* src, int64_t W0, float thr, float hi, float lo, uint8_t* dst,
                                 RowStats& st, int64_t X = 0) {
  for (; X < W0; ++X) {
    const float v = src[X];
    const bool on = v > thr;
    dst[X] = on;
    st.n_hi += v > hi;
    st.n_lo += v > lo;
    if (on) {
      if (st.x0 < 0) st.x0 = static_cast<int32_t>(X);
      st.x1 = static_cast<int32_t>(X);
    }
  }
}

#if SAMFAST_X86
SAMFAST_AVX2 void threshold_stats_avx2(const float* src, int64_t W0, float thr, float hi, float lo, uint8_t* dst,
                                       RowStats& st) {
  const __m256 t = _mm256_set1_ps(thr), th = _mm256_set1_ps(hi), tl = _mm256_set1_ps(lo);
  int64_t X = 0;
  for (; X + 8 <= W0; X += 8) {
    const __m256 v = _mm256_loadu_ps(src + X);
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_GT_OQ));
    st.n_hi += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, th, _CMP_GT_OQ)));
    st.n_lo += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, tl, _CMP_GT_OQ)));
    std::memcpy(dst + X, &kBoolLut[m], 8);
    if (m) {
      if (st.x0 < 0) st.x0 = static_cast<int32_t>(X + __builtin_ctz(m));
      st.x1 = static_cast<int32_t>(X + 31 - __builtin_clz(m));
    }
  }
  threshold_stats_base(src, W0, thr, hi, lo, dst, st, X);
}
#endif

// Reduce the per-row statistics of each plane into its stability score and XYXY box.
void reduce_plane_stats(const std::vector<RowStats>& rs, int64_t planes, int64_t H0, float* stability,
                        int64_t* boxes) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    int64_t n_hi = 0, n_lo = 0, x0 = INT64_MAX, x1 = -1, y0 = -1, y1 = -1;
    for (int64_t Y = 0; Y < H0; ++Y) {
      const RowStats& r = rs[p * H0 + Y];
      n_hi += r.n_hi;
      n_lo += r.n_lo;
      if (r.x0 >= 0) {
        if (y0 < 0) y0 = Y;
        y1 = Y;
        x0 = std::min<int64_t>(x0, r.x0);
        x1 = std::max<int64_t>(x1, r.x1);
      }
    }
    // float32 division of the counts, as torch's int32 / int32 true division (0 / 0 -> NaN)
    stability[p] = static_cast<float>(n_hi) / static_cast<float>(n_lo);
    int64_t* b = boxes + p * 4;
    if (y0 < 0) { b[0] = b[1] = b[2] = b[3] = 0; }
    else { b[0] = x0; b[1] = y0; b[2] = x1; b[3] = y1; }
  }
}

// Per-thread cache of x-interpolated low-res rows, keyed by global low-res row id (plane * h + k).
struct RowCache {
  static constexpr int kSlots = 8;
  AlignedFloats data;
  int64_t tag[kSlots];
  int64_t stride = 0;
  int next = 0;
  void init(int64_t W0) {
    stride = (W0 + 15) / 16 * 16;
    data.alloc(stride * kSlots);
    std::fill(tag, tag + kSlots, int64_t(-1));
  }
};

}  // namespace

void postprocess_masks_cpu(const PostprocessArgs& a) {
  const int64_t planes = a.B * a.M, h = a.h, w = a.w, H0 = a.H0, W0 = a.W0;
  if (planes == 0 || H0 == 0 || W0 == 0) return;
  const AxisTaps ty = compose_taps(h, a.img_size, a.input_h, H0);
  const AxisTaps tx = compose_taps(w, a.img_size, a.input_w, W0);
  const bool avx2 = use_avx2(), avx512 = avx2 && use_avx512();
  (void)avx512;  // x86 only
  const XBlocks xb = avx2 ? make_xblocks(tx, W0) : XBlocks{};
  // Output rows (over all planes) in chunks of kChunk, scheduled dynamically: robust when a thread
  // is descheduled, and each chunk re-computes only the few x-interpolated rows it starts with.
  const int64_t total = planes * H0, kChunk = 32, nchunks = (total + kChunk - 1) / kChunk;
  const bool stats = a.out_kind == MaskOut::Bool && a.stability != nullptr && a.boxes != nullptr;
  std::vector<RowStats> row_stats(stats ? total : 0);
#pragma omp parallel
  {
    RowCache cache;
    cache.init(W0);
    AlignedFloats lowrow, tmp;
    lowrow.alloc(w + 16);  // zero padded for the 8-wide window loads
    tmp.alloc(W0 + 16);
#pragma omp for schedule(dynamic, 1)
    for (int64_t chunk = 0; chunk < nchunks; ++chunk)
    for (int64_t r = chunk * kChunk; r < std::min(total, (chunk + 1) * kChunk); ++r) {
      const int64_t plane = r / H0, Y = r % H0;
      const int n = ty.n[Y];
      const float* rows[kTaps];
      int used[kTaps];
      for (int t = 0; t < n; ++t) {
        const int64_t key = plane * h + ty.idx[Y * kTaps + t];
        int slot = -1;
        for (int s = 0; s < RowCache::kSlots; ++s)
          if (cache.tag[s] == key) slot = s;
        if (slot < 0) {  // miss: evict round-robin, never a slot this output row already uses
          for (;;) {
            slot = cache.next;
            cache.next = (cache.next + 1) % RowCache::kSlots;
            bool busy = false;
            for (int u = 0; u < t; ++u) busy |= used[u] == slot;
            if (!busy) break;
          }
          if (a.masks_bf16) {
            const uint16_t* s = static_cast<const uint16_t*>(a.masks) + key * w;
            for (int64_t i = 0; i < w; ++i) lowrow.p[i] = bf16_to_float(s[i]);
          } else {
            std::memcpy(lowrow.p, static_cast<const float*>(a.masks) + key * w, w * sizeof(float));
          }
          float* dst = cache.data.p + slot * cache.stride;
#if SAMFAST_X86
          if (avx2) xpass_avx2(lowrow.p, tx, xb, W0, dst); else
#endif
          xpass_base(lowrow.p, tx, W0, dst);
          cache.tag[slot] = key;
        }
        used[t] = slot;
        rows[t] = cache.data.p + slot * cache.stride;
      }
      const float* wy = &ty.wt[Y * kTaps];
#if SAMFAST_X86
      if (avx2 && !stats && a.out_kind == MaskOut::Bool) {
        uint8_t* o = static_cast<uint8_t*>(a.out) + r * W0;
        if (avx512) ycombine_threshold_avx512(rows, wy, n, W0, a.threshold, o);
        else ycombine_threshold_avx2(rows, wy, n, W0, a.threshold, o);
        continue;
      }
#endif
      float* dstf = a.out_kind == MaskOut::Float32 ? static_cast<float*>(a.out) + r * W0 : tmp.p;
#if SAMFAST_X86
      if (avx2) ycombine_avx2(rows, wy, n, W0, dstf); else
#endif
      ycombine_base(rows, wy, n, W0, dstf);
      if (stats) {
        uint8_t* o = static_cast<uint8_t*>(a.out) + r * W0;
#if SAMFAST_X86
        if (avx2) threshold_stats_avx2(dstf, W0, a.threshold, a.stab_hi, a.stab_lo, o, row_stats[r]); else
#endif
        threshold_stats_base(dstf, W0, a.threshold, a.stab_hi, a.stab_lo, o, row_stats[r]);
      } else if (a.out_kind == MaskOut::Bool) {
        uint8_t* o = static_cast<uint8_t*>(a.out) + r * W0;
#if SAMFAST_X86
        if (avx2) threshold_avx2(dstf, W0, a.threshold, o); else
#endif
        for (int64_t X = 0; X < W0; ++X) o[X] = dstf[X] > a.threshold;
      } else if (a.out_kind == MaskOut::BFloat16) {
        uint16_t* o = static_cast<uint16_t*>(a.out) + r * W0;
        for (int64_t X = 0; X < W0; ++X) o[X] = float_to_bf16(dstf[X]);
      }
    }
  }
  if (stats) reduce_plane_stats(row_stats, planes, H0, a.stability, a.boxes);
}

}  // namespace samfast::cpu
