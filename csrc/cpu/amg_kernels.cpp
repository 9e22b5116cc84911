// CPU kernels of the automatic mask generator; contracts in cpu/amg_kernels.h.
// Masks are scanned a machine word (8 bytes of 0/1) at a time; column-major RLE work goes through a
// per-thread, cache-blocked transpose. Independent masks run in parallel (OpenMP).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")  // IoU / ratios must round like torch (no FMA contraction)
#endif
#include "cpu/amg_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace samfast::cpu {
namespace {

constexpr uint64_t kOnes = 0x0101010101010101ull;

inline uint64_t load8(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline int first_set_byte(uint64_t v) {  // v != 0; little-endian byte index of the lowest set byte
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return __builtin_clzll(v) >> 3;
#else
  return __builtin_ctzll(v) >> 3;
#endif
}

// Index of the first byte in p[from, n) differing from `cur` (0 / 1), or n.
inline int64_t next_diff(const uint8_t* p, int64_t from, int64_t n, uint8_t cur) {
  const uint64_t pat = cur ? kOnes : 0;
  int64_t i = from;
  for (; i + 8 <= n; i += 8) {
    uint64_t d = load8(p + i) ^ pat;
    if (d) return i + first_set_byte(d);
  }
  for (; i < n; ++i)
    if (p[i] != cur) return i;
  return n;
}

inline int64_t first_nonzero(const uint8_t* p, int64_t n) { return next_diff(p, 0, n, 0); }

inline int64_t last_nonzero(const uint8_t* p, int64_t n) {  // -1 when none
  int64_t i = n;
  for (; i >= 8; i -= 8) {
    uint64_t v = load8(p + i - 8);
    if (v) {
      for (int64_t k = i - 1;; --k)
        if (p[k]) return k;
    }
  }
  for (--i; i >= 0; --i)
    if (p[i]) return i;
  return -1;
}

// dst[x * H + y] = src[y * W + x] (row-major H x W -> column-major), blocked for the cache.
template <typename T>
void transpose(const T* src, T* dst, int64_t H, int64_t W) {
  constexpr int64_t B = 64;
  for (int64_t y0 = 0; y0 < H; y0 += B)
    for (int64_t x0 = 0; x0 < W; x0 += B) {
      const int64_t y1 = std::min(H, y0 + B), x1 = std::min(W, x0 + B);
      for (int64_t x = x0; x < x1; ++x)
        for (int64_t y = y0; y < y1; ++y) dst[x * H + y] = src[y * W + x];
    }
}

inline float bf16_to_f32(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// ------------------------------------------------------------------------------------------ NMS

template <typename BoxT, typename ScoreT>
int64_t nms(const BoxT* boxes, const ScoreT* scores, const int64_t* cats, int64_t N, double iou_threshold,
            int64_t* keep) {
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  // Descending, stable; NaN ranks highest (as torch.sort(descending=True) does).
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const ScoreT sa = scores[a], sb = scores[b];
    const bool na = std::isnan(sa), nb = std::isnan(sb);
    if (na || nb) return na && !nb;
    return sa > sb;
  });
  std::vector<BoxT> x1(N), y1(N), x2(N), y2(N), area(N);
  std::vector<int64_t> cat(N, 0);
  for (int64_t k = 0; k < N; ++k) {
    const BoxT* b = boxes + 4 * order[k];
    x1[k] = b[0]; y1[k] = b[1]; x2[k] = b[2]; y2[k] = b[3];
    area[k] = (b[2] - b[0]) * (b[3] - b[1]);
    if (cats) cat[k] = cats[order[k]];
  }
  std::vector<uint8_t> suppressed(N, 0);
  int64_t n_keep = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (suppressed[i]) continue;
    keep[n_keep++] = order[i];
    const BoxT ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], ia = area[i];
    const int64_t ic = cat[i];
    for (int64_t j = i + 1; j < N; ++j) {
      if (suppressed[j] || cat[j] != ic) continue;
      const BoxT w = std::max(BoxT(0), std::min(ix2, x2[j]) - std::max(ix1, x1[j]));
      const BoxT h = std::max(BoxT(0), std::min(iy2, y2[j]) - std::max(iy1, y1[j]));
      const BoxT inter = w * h;
      const BoxT ovr = inter / (ia + area[j] - inter);
      if (static_cast<double>(ovr) > iou_threshold) suppressed[j] = 1;
    }
  }
  return n_keep;
}

template int64_t nms<float, float>(const float*, const float*, const int64_t*, int64_t, double, int64_t*);
template int64_t nms<float, double>(const float*, const double*, const int64_t*, int64_t, double, int64_t*);
template int64_t nms<double, float>(const double*, const float*, const int64_t*, int64_t, double, int64_t*);
template int64_t nms<double, double>(const double*, const double*, const int64_t*, int64_t, double, int64_t*);

// ---------------------------------------------------------------------------- stability score

void stability_score(const void* logits, bool bf16, int64_t N, int64_t H, int64_t W, float hi, float lo,
                     float* out) {
#pragma omp parallel
  {
    std::vector<float> row(bf16 ? W : 0);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      int32_t inter = 0, uni = 0;
      for (int64_t y = 0; y < H; ++y) {
        const float* r;
        if (bf16) {
          const uint16_t* src = static_cast<const uint16_t*>(logits) + (n * H + y) * W;
          for (int64_t x = 0; x < W; ++x) row[x] = bf16_to_f32(src[x]);
          r = row.data();
        } else {
          r = static_cast<const float*>(logits) + (n * H + y) * W;
        }
        int32_t ci = 0, cu = 0;
        for (int64_t x = 0; x < W; ++x) {
          ci += r[x] > hi;
          cu += r[x] > lo;
        }
        // torch: .sum(-1, dtype=int16) wraps per row, then .sum(-1, dtype=int32)
        inter += static_cast<int16_t>(static_cast<uint16_t>(ci));
        uni += static_cast<int16_t>(static_cast<uint16_t>(cu));
      }
      out[n] = static_cast<float>(inter) / static_cast<float>(uni);
    }
  }
}

// --------------------------------------------------------------------------------- mask -> box

void mask_to_box(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int64_t* boxes) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* m = masks + n * H * W;
    int64_t top = -1, bottom = -1, left = W, right = -1;
    for (int64_t y = 0; y < H; ++y) {
      const uint8_t* r = m + y * W;
      // Only the parts outside the current [left, right] span can move the box's x edges.
      const int64_t f = first_nonzero(r, left);
      bool any = f < left;
      if (any) left = f;
      if (right >= 0 && !any) any = first_nonzero(r + left, right - left + 1) <= right - left;
      const int64_t start = std::max<int64_t>(right + 1, 0);
      const int64_t l = last_nonzero(r + start, W - start);
      if (l >= 0) {
        right = start + l;
        any = true;
      }
      if (any) {
        if (top < 0) top = y;
        bottom = y;
      }
    }
    int64_t* b = boxes + 4 * n;
    if (top < 0) {
      b[0] = b[1] = b[2] = b[3] = 0;
    } else {
      b[0] = left; b[1] = top; b[2] = right; b[3] = bottom;
    }
  }
}

// ---------------------------------------------------------------------------------------- RLE

void rle_count(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int64_t* lengths) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* m = masks + n * H * W;
    if (H * W == 0) { lengths[n] = 1; continue; }
    int64_t transitions = 0;
    for (int64_t y = 0; y + 1 < H; ++y) {  // (y, x) -> (y + 1, x): within a column
      const uint8_t* a = m + y * W;
      const uint8_t* b = a + W;
      int64_t x = 0, acc = 0;
      for (; x + 8 <= W; x += 8) acc += __builtin_popcountll(load8(a + x) ^ load8(b + x));
      for (; x < W; ++x) acc += a[x] ^ b[x];
      transitions += acc;
    }
    const uint8_t* last = m + (H - 1) * W;
    for (int64_t x = 0; x + 1 < W; ++x) transitions += last[x] ^ m[x + 1];  // column x -> x + 1
    lengths[n] = transitions + 1 + (m[0] ? 1 : 0);
  }
}

void rle_encode(const uint8_t* masks, int64_t N, int64_t H, int64_t W, const int64_t* offsets,
                int64_t* counts) {
  const int64_t HW = H * W;
  int64_t bad = -1;  // a mask whose slot size differs from its number of counts
#pragma omp parallel
  {
    std::vector<uint8_t> col(HW);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      int64_t* c = counts + offsets[n];
      const int64_t cap = offsets[n + 1] - offsets[n];
      int64_t k = 0;
      if (HW == 0) {
        if (cap >= 1) c[k++] = 0;
      } else {
        transpose(masks + n * HW, col.data(), H, W);
        uint8_t cur = col[0];
        if (cur && k < cap) c[k++] = 0;
        int64_t start = 0;
        while (start < HW && k < cap) {
          const int64_t end = next_diff(col.data(), start, HW, cur);
          c[k++] = end - start;
          start = end;
          cur ^= 1;
        }
        if (start < HW) k = cap + 1;  // ran out of room
      }
      if (k != cap) {
#pragma omp critical(samfast_rle_encode)
        bad = n;
      }
    }
  }
  if (bad >= 0)
    throw std::invalid_argument("rle_encode: offsets do not match the masks' run counts (mask " +
                                std::to_string(bad) + "); compute them with rle_count");
}

void rle_decode(const int64_t* counts, const int64_t* offsets, int64_t N, int64_t H, int64_t W, uint8_t* out) {
  const int64_t HW = H * W;
  for (int64_t n = 0; n < N; ++n) {  // validate everything before writing (no throws under OpenMP)
    int64_t total = 0;
    for (int64_t k = offsets[n]; k < offsets[n + 1]; ++k) {
      if (counts[k] < 0)
        throw std::invalid_argument("rle " + std::to_string(n) + ": negative count " + std::to_string(counts[k]));
      total += counts[k];
    }
    if (total != HW)
      throw std::invalid_argument("rle " + std::to_string(n) + ": counts sum to " + std::to_string(total) +
                                  ", expected h * w = " + std::to_string(HW));
  }
#pragma omp parallel
  {
    std::vector<uint8_t> col(HW);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      int64_t pos = 0;
      uint8_t val = 0;
      for (int64_t k = offsets[n]; k < offsets[n + 1]; ++k) {
        std::memset(col.data() + pos, val, counts[k]);
        pos += counts[k];
        val ^= 1;
      }
      transpose(col.data(), out + n * HW, W, H);  // column-major W x H "rows" -> row-major H x W
    }
  }
}

void rle_area(const int64_t* counts, const int64_t* offsets, int64_t N, int64_t* area) {
  for (int64_t n = 0; n < N; ++n) {
    int64_t a = 0;
    for (int64_t k = offsets[n] + 1; k < offsets[n + 1]; k += 2) a += counts[k];
    area[n] = a;
  }
}

void coco_rle_strings(const int64_t* counts, const int64_t* offsets, int64_t N, uint8_t* chars, int64_t* lengths) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t* c = counts + offsets[n];
    const int64_t m = offsets[n + 1] - offsets[n];
    uint8_t* s = chars + 7 * offsets[n];
    int64_t p = 0;
    for (int64_t i = 0; i < m; ++i) {  // pycocotools rleToString, with cnts as uint32
      int64_t x = static_cast<int64_t>(static_cast<uint32_t>(c[i]));
      if (i > 2) x -= static_cast<int64_t>(static_cast<uint32_t>(c[i - 2]));
      bool more = true;
      while (more) {
        int64_t ch = x & 0x1f;
        x >>= 5;  // arithmetic shift, as C's long >> on gcc / clang / msvc
        more = (ch & 0x10) ? x != -1 : x != 0;
        if (more) ch |= 0x20;
        s[p++] = static_cast<uint8_t>(ch + 48);
      }
    }
    lengths[n] = p;
  }
}

// ------------------------------------------------------------------- small-region removal

namespace {

int32_t find_root(std::vector<int32_t>& parent, int32_t a) {
  while (parent[a] != a) {
    parent[a] = parent[parent[a]];
    a = parent[a];
  }
  return a;
}

void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) parent[b] = a;
  else if (b < a) parent[a] = b;
}

}  // namespace

void remove_small_regions(const uint8_t* masks, int64_t N, int64_t H, int64_t W, double area_thresh, bool holes,
                          uint8_t* out, uint8_t* changed) {
  const int64_t HW = H * W;
#pragma omp parallel
  {
    std::vector<int32_t> label(HW), parent, compact;
    std::vector<int64_t> size;
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* m = masks + n * HW;
      uint8_t* o = out + n * HW;
      const uint8_t flip = holes ? 1 : 0;  // working = mask ^ holes
      parent.assign(1, 0);                  // provisional label 0 = background
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const int64_t p = y * W + x;
          if (!(m[p] ^ flip)) { label[p] = 0; continue; }
          int32_t l = 0;
          const int64_t nb[4][2] = {{y - 1, x - 1}, {y - 1, x}, {y - 1, x + 1}, {y, x - 1}};
          for (auto& q : nb) {
            if (q[0] < 0 || q[1] < 0 || q[1] >= W) continue;
            const int32_t lq = label[q[0] * W + q[1]];
            if (!lq) continue;
            if (!l) l = lq;
            else if (lq != l) unite(parent, l, lq);
          }
          if (!l) {
            l = static_cast<int32_t>(parent.size());
            parent.push_back(l);
          }
          label[p] = l;
        }
      // Final labels 1..K in raster order of each component's first pixel (as cv2 numbers them).
      compact.assign(parent.size(), 0);
      size.assign(1, 0);
      for (int64_t p = 0; p < HW; ++p) {
        if (!label[p]) continue;
        const int32_t r = find_root(parent, label[p]);
        if (!compact[r]) {
          compact[r] = static_cast<int32_t>(size.size());
          size.push_back(0);
        }
        label[p] = compact[r];
        ++size[label[p]];
      }
      const int64_t K = static_cast<int64_t>(size.size()) - 1;
      std::vector<uint8_t> fill(K + 1, 0);  // holes: labels to set; islands: labels to keep
      bool any_small = false, any_kept = false;
      for (int64_t k = 1; k <= K; ++k) {
        const bool small = static_cast<double>(size[k]) < area_thresh;
        any_small |= small;
        fill[k] = holes ? small : !small;
        any_kept |= !small;
      }
      changed[n] = any_small;
      if (!any_small) {
        std::memcpy(o, m, HW);
        continue;
      }
      if (!holes && !any_kept) {  // every island is small: keep the largest (first on ties)
        int64_t best = 1;
        for (int64_t k = 2; k <= K; ++k)
          if (size[k] > size[best]) best = k;
        fill[best] = 1;
      }
      if (holes)
        for (int64_t p = 0; p < HW; ++p) o[p] = m[p] | fill[label[p]];
      else
        for (int64_t p = 0; p < HW; ++p) o[p] = fill[label[p]];
    }
  }
}

}  // namespace samfast::cpu
