// Operands of the projection pass (see proj_pass_prep.h and, for the algebra, proj_pass_kernel.h).
#include "cpu/proj_pass_prep.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cached_decoder_params.h"

namespace samfast::cpu {

using namespace small_gemm;
using namespace decoder_steps;

namespace {

constexpr int64_t kBlock = 32;  // pixels per block of the per-image array (= the pass's tile)

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

std::vector<float> centred(const float* v, int64_t C) {
  std::vector<float> out(C);
  center_rows(v, 1, C, out.data());
  return out;
}

// Vectors that depend on the weights only (see proj_pass_kernel.h): b0c = J b0, gb0 = g0 b0c, zb0 = J gb0,
// vb = J (beta0 + b1), and g1 zb0, g1 vb (the final attention's sides of the last two).
struct WeightVectors {
  std::vector<float> b0c, gb0, zb0, vb, zb0g1, vbg1;
  WeightVectors(const DecoderParams& p, int64_t C) {
    const float *g0 = p.layers[0].n4.w, *beta0 = p.layers[0].n4.b, *g1 = p.layers[1].n4.w;
    b0c = centred(p.layers[0].i2t.o.b, C);
    gb0.resize(C);
    for (int64_t k = 0; k < C; ++k) gb0[k] = g0[k] * b0c[k];
    zb0 = centred(gb0.data(), C);
    std::vector<float> s(C);
    for (int64_t k = 0; k < C; ++k) s[k] = beta0[k] + p.layers[1].i2t.o.b[k];
    vb = centred(s.data(), C);
    zb0g1.resize(C);
    vbg1.resize(C);
    for (int64_t k = 0; k < C; ++k) {
      zb0g1[k] = g1[k] * zb0[k];
      vbg1[k] = g1[k] * vb[k];
    }
  }
};

// One prompt's token-side rows ([HT, C], token-major rows t * H + h): R0g = g0 R0c, Z0 = J R0g, R1c = J R1,
// and the final attention's Z0g1 = g1 Z0, R1g1 = g1 R1c. Y = [Z0; R1c] is stored as one [2 HT, C] block.
struct PromptRows {
  AlignedFloats R0g, Y, Z0g1, R1g1;
  float* Z0;
  float* R1c;
  std::vector<float> r1mean;
  PromptRows(const DecoderParams& p, const ProjDims& d, int64_t C, const ProjTokenInputs& in, int64_t b) {
    const int64_t HT = d.ht();
    const float *g0 = p.layers[0].n4.w, *g1 = p.layers[1].n4.w;
    R0g.alloc(HT * C, false);
    Y.alloc(2 * HT * C, false);
    Z0g1.alloc(HT * C, false);
    R1g1.alloc(HT * C, false);
    Z0 = Y.p;
    R1c = Y.p + HT * C;
    r1mean.assign(HT, 0.f);
    for (int64_t j = 0; j < HT; ++j) {
      const float* r0 = in.r0c + (b * HT + j) * C;
      for (int64_t k = 0; k < C; ++k) R0g.p[j * C + k] = g0[k] * r0[k];
      center_rows(R0g.p + j * C, 1, C, Z0 + j * C);
      const float* r1 = in.r1 + (b * HT + j) * C;
      float mean = 0.f;
      for (int64_t k = 0; k < C; ++k) mean += r1[k];
      r1mean[j] = mean / static_cast<float>(C);
      center_rows(r1, 1, C, R1c + j * C);
      for (int64_t k = 0; k < C; ++k) {
        Z0g1.p[j * C + k] = g1[k] * Z0[j * C + k];
        R1g1.p[j * C + k] = g1[k] * R1c[j * C + k];
      }
    }
  }
};

void transpose(const float* src, int64_t rows, int64_t cols, float* dst) {  // dst[c, r] = src[r, c]
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// The blocks on and above the diagonal (8-row blocks, rows i, columns j >= i rounded down to 8) of the Gram matrix
// G = Y Y^T ([n, n], n % 8 == 0) of Y [n, C] given also as YT [C, n]; OpenMP over row blocks when `parallel`.
void gram_upper(Isa isa, const float* Y, const float* YT, int64_t n, int64_t C, float* G, bool parallel) {
  std::fill(G, G + n * n, 0.f);
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t i0 = 0; i0 < n; i0 += 8)
    gemm(isa, Y + i0 * C, C, std::min<int64_t>(8, n - i0), C, YT + i0, n, n - i0, G + i0 * n + i0, n);
}

}  // namespace

bool proj_image_applies(int64_t N) { return N > 0 && N % kBlock == 0; }

bool proj_pass_applies(int64_t N, int64_t H, int64_t T, int64_t Tu) {
  return proj_image_applies(N) && T >= 1 && T <= kProjSlots && Tu >= 1 && Tu <= kProjSlots && (H * T) % 8 == 0;
}

void proj_pass_image(const Ctx& c, const DecoderParams& p, const float* x0, const float* pe, int64_t N, float* out) {
  const int64_t C = c.C, Di = c.Di, W = kProjArrays * Di + 2 * Di + kProjScalars;  // row-major staging
  const float *g0 = p.layers[0].n4.w, *g1 = p.layers[1].n4.w;
  const Slot &wq0 = p.layers[0].i2t.q, &wq1 = p.layers[1].i2t.q, &wkf = p.final_attn.k, &wvf = p.final_attn.v;
  const WeightVectors wv(p, C);
#pragma omp parallel
  {
    AlignedFloats xc, xg, jxg, t, rows;
    xc.alloc(kBlock * C, false);
    xg.alloc(kBlock * C, false);
    jxg.alloc(kBlock * C, false);
    t.alloc(kBlock * C, false);
    rows.alloc(kBlock * W, false);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < N / kBlock; ++blk) {
      const float* x = x0 + blk * kBlock * C;
      const float* pb = pe + blk * kBlock * C;
      center_rows(x, kBlock, C, xc.p);  // J x0
      for (int64_t i = 0; i < kBlock; ++i)
        for (int64_t k = 0; k < C; ++k) xg.p[i * C + k] = xc.p[i * C + k] * g0[k];  // g0 J x0
      center_rows(xg.p, kBlock, C, jxg.p);                                          // J g0 J x0
      float* R = rows.p;
      std::fill(R, R + kBlock * W, 0.f);
      gemm(c.isa, xc.p, C, kBlock, C, p.layers[0].i2t.o.w, Di, Di, R + 7 * Di, W);  // A8 = Wo0^T J x0
      add(c.isa, x, pb, t.p, kBlock * C);
      gemm_wt(c, wq0, t.p, C, kBlock, 0, C, 0, Di, R + 8 * Di, W);  // A0 = q0 = Wq0 (x0 + pe) + bq0
      for (int64_t i = 0; i < kBlock; ++i)
        for (int64_t k = 0; k < Di; ++k) R[i * W + 8 * Di + k] += wq0.b[k];
      gemm_wt(c, wq1, xg.p, C, kBlock, 0, C, 0, Di, R, W);       // A1 = Wq1 g0 Jx0
      gemm_wt(c, wq1, pb, C, kBlock, 0, C, 0, Di, R + Di, W);    // A2 = Wq1 pe
      for (int64_t i = 0; i < kBlock; ++i)
        for (int64_t k = 0; k < C; ++k) t.p[i * C + k] = g0[k] * jxg.p[i * C + k];
      center_rows(t.p, kBlock, C, t.p);
      gemm(c.isa, t.p, C, kBlock, C, p.layers[0].i2t.o.w, Di, Di, R + 2 * Di, W);  // A3 = Wo0^T J g0 J g0 Jx0
      gemm(c.isa, jxg.p, C, kBlock, C, p.layers[1].i2t.o.w, Di, Di, R + 3 * Di, W);  // A4 = Wo1^T J g0 Jx0
      for (int64_t i = 0; i < kBlock; ++i)
        for (int64_t k = 0; k < C; ++k) t.p[i * C + k] = g1[k] * jxg.p[i * C + k];
      gemm_wt(c, wkf, t.p, C, kBlock, 0, C, 0, Di, R + 4 * Di, W);  // A5 = Wkf g1 J g0 Jx0
      gemm_wt(c, wkf, pb, C, kBlock, 0, C, 0, Di, R + 5 * Di, W);   // A6 = Wkf pe
      gemm_wt(c, wvf, t.p, C, kBlock, 0, C, 0, Di, R + 6 * Di, W);  // A7 = Wvf g1 J g0 Jx0
      for (int64_t i = 0; i < kBlock; ++i) {
        float* e = R + i * W + 9 * Di;
        const float *xr = xg.p + i * C, *jr = jxg.p + i * C;
        float e1 = 0.f;
        for (int64_t k = 0; k < C; ++k) e1 += xr[k];
        e[0] = e1;                          // g0 . Jx0
        e[1] = dot(jr, jr, C);              // |J g0 Jx0|^2
        e[2] = dot(jr, wv.zb0.data(), C);   // (J g0 Jx0) . (J g0 J b0)
        e[3] = dot(xr, wv.vb.data(), C);    // (g0 Jx0) . J (beta0 + b1)
        const float* cr = xc.p + i * C;
        e[4] = dot(cr, cr, C);              // |Jx0|^2
        float m = 0.f;
        for (int64_t k = 0; k < C; ++k) m += x[i * C + k];
        e[5] = m / static_cast<float>(C);   // mean(x0)
        e[6] = dot(cr, wv.b0c.data(), C);   // Jb0 . Jx0
      }
      // staging row: A1 .. A7 (7 Di) | A8 | A0 | e1 .. e7 -> the two regions, feature-major per block
      const int64_t W0 = proj_stats0_width(Di), W2 = proj_pass_width(Di);
      float* o0 = out + blk * W0 * kBlock;
      float* o2 = out + N * W0 + blk * W2 * kBlock;
      for (int64_t i = 0; i < kBlock; ++i) {
        const float* r = R + i * W;
        for (int64_t f = 0; f < kProjArrays * Di; ++f) o2[f * kBlock + i] = r[f];
        for (int64_t f = 0; f < 2 * Di; ++f) o0[f * kBlock + i] = r[kProjArrays * Di + f];
        const float* e = r + 9 * Di;
        for (int64_t f = 0; f < kProjScalars; ++f) {
          o2[(kProjArrays * Di + f) * kBlock + i] = f < 4 ? e[f] : 0.f;
          o0[(2 * Di + f) * kBlock + i] = f < 3 ? e[4 + f] : 0.f;
        }
      }
    }
  }
}

void proj_pass_prompts0(const Ctx& c, const DecoderParams& p, const ProjDims& d, const ProjTokenInputs& in,
                        float* prompts) {
  const int64_t B = c.B, C = c.C, H = d.H, dh = d.dh, Di = H * dh, T = d.T, HT = d.ht();
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  const WeightVectors wv(p, C);
  float mean_b0 = 0.f;
  for (int64_t k = 0; k < C; ++k) mean_b0 += p.layers[0].i2t.o.b[k];
  mean_b0 /= static_cast<float>(C);
#pragma omp parallel for schedule(static) if (B > 1)
  for (int64_t b = 0; b < B; ++b) {
    float* block = prompts + b * d.prompt_floats();
    std::fill(block, block + d.prompt_floats(), 0.f);
    const ProjPrompt v = proj_prompt_views(d, block);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t dd = 0; dd < dh; ++dd) {
          const int64_t src = (b * T + t) * Di + h * dh + dd, dst = (h * kProjSlots + t) * dh + dd;
          v.kq0[dst] = in.k0[src] * scale;
          v.kv0[dst] = in.v0[src];
        }
    const float* R0c = in.r0c + b * HT * C;
    AlignedFloats RT, Gm;
    RT.alloc(C * HT, false);
    transpose(R0c, HT, C, RT.p);
    Gm.alloc(HT * HT);
    gram_upper(c.isa, R0c, RT.p, HT, C, Gm.p, false);  // R0c R0c^T (upper blocks)
    for (int64_t i = 0; i < HT; ++i)
      for (int64_t j = 0; j < HT; ++j) v.u0[i * HT + j] = j < i ? 0.f : (j == i ? 1.f : 2.f) * Gm.p[i * HT + j];
    for (int64_t j = 0; j < HT; ++j) {
      const float* r = in.r0 + (b * HT + j) * C;
      float m = 0.f;
      for (int64_t k = 0; k < C; ++k) m += r[k];
      v.w8[j] = m / static_cast<float>(C);                    // mean of R0's row
      v.w8[HT + j] = dot(R0c + j * C, wv.b0c.data(), C);    // R0c . b0c
    }
    v.s[5] = dot(wv.b0c.data(), wv.b0c.data(), C);
    v.s[6] = mean_b0;
  }
}

void proj_pass_prompts(const Ctx& c, const DecoderParams& p, const ProjDims& d, const ProjTokenInputs& in,
                       float* prompts, float* rows_g1) {
  const int64_t B = c.B, C = c.C, H = d.H, dh = d.dh, Di = H * dh, T = d.T, Tu = d.Tu, HT = d.ht(), HT2 = 2 * HT;
  const int64_t HUp = d.hup(), W0 = d.w0_rows(), W1 = d.w1_rows();
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  const float *g0 = p.layers[0].n4.w, *beta0 = p.layers[0].n4.b, *beta1 = p.layers[1].n4.b;
  const float* bkf = p.final_attn.k.b;
  const WeightVectors wv(p, C);
  std::vector<float> wvec(C);
  for (int64_t k = 0; k < C; ++k) wvec[k] = g0[k] * wv.vb[k];
  float mean_b = 0.f;
  for (int64_t k = 0; k < C; ++k) mean_b += beta0[k] + p.layers[1].i2t.o.b[k];
  mean_b /= static_cast<float>(C);
  // one prompt: its GEMMs run on the threads when it is the only one (no nested parallel regions)
  auto one = [&](int64_t b) {
    const ProjPrompt v = proj_prompt_views(d, prompts + b * d.prompt_floats());  // zeroed by proj_pass_prompts0
    for (int64_t h = 0; h < H; ++h)
      for (int64_t dd = 0; dd < dh; ++dd) {
        for (int64_t t = 0; t < T; ++t) {
          const int64_t src = (b * T + t) * Di + h * dh + dd, dst = (h * kProjSlots + t) * dh + dd;
          v.kq1[dst] = in.k1[src] * scale;
          v.kv1[dst] = in.v1[src];
        }
        for (int64_t u = 0; u < Tu; ++u)
          v.kqf[(h * kProjSlots + u) * dh + dd] = in.qf[(b * Tu + u) * Di + h * dh + dd] * scale;
      }
    const PromptRows pr(p, d, C, in, b);
    std::memcpy(rows_g1 + b * 2 * HT * C, pr.Z0g1.p, HT * C * sizeof(float));  // for proj_pass_finish
    std::memcpy(rows_g1 + (b * 2 + 1) * HT * C, pr.R1g1.p, HT * C * sizeof(float));
    AlignedFloats YT, UkfT, Wm;
    YT.alloc(C * HT2, false);
    transpose(pr.Y.p, HT2, C, YT.p);
    UkfT.alloc(C * HUp);  // zeroed: queries past H Tu
    for (int64_t q = 0; q < H * Tu; ++q)
      for (int64_t k = 0; k < C; ++k) UkfT.p[k * HUp + q] = in.ukf[(b * H * Tu + q) * C + k];
    // W0 (section 1) and W1 + the vectors (section 2) are independent: with one prompt they run on two threads
    AlignedFloats Wm1;
    Wm.alloc(std::max(HT * W0, HT2 * HT2));
    Wm1.alloc(HT * W1);
#pragma omp parallel sections if (B == 1)
    {
#pragma omp section
      {
        // W0 [HT, W0] = M1 | F0 | vectors, stored transposed
        gemm(c.isa, pr.R0g.p, C, HT, C, in.u1 + b * C * HT, HT, HT, Wm.p, W0);
        gemm(c.isa, pr.Z0g1.p, C, HT, C, UkfT.p, HUp, HUp, Wm.p + HT, W0);
        for (int64_t j = 0; j < HT; ++j) {
          float* vc = Wm.p + j * W0 + W0 - 8;
          const float* rg = pr.R0g.p + j * C;
          float sum = 0.f;
          for (int64_t k = 0; k < C; ++k) sum += rg[k];
          vc[0] = sum;                                    // R0c . g0
          vc[1] = dot(pr.Z0 + j * C, wv.zb0.data(), C);   // R0c S b0c
          vc[2] = dot(rg, wv.vb.data(), C);               // R0c . (g0 vb)
        }
        transpose(Wm.p, HT, W0, v.w0);
      }
#pragma omp section
      {
        // W1 [HT, W1] = F1 | vectors (Wm1 zeroed by its alloc)
        gemm(c.isa, pr.R1g1.p, C, HT, C, UkfT.p, HUp, HUp, Wm1.p, W1);
        for (int64_t j = 0; j < HT; ++j) {
          float* vc = Wm1.p + j * W1 + W1 - 8;
          vc[0] = pr.r1mean[j];
          vc[1] = dot(pr.R1c + j * C, wv.vb.data(), C);
          vc[2] = dot(pr.R1c + j * C, wv.gb0.data(), C);
        }
        transpose(Wm1.p, HT, W1, v.w1);
        for (int64_t j = 0; j < HT; ++j) v.c2[j] = in.cb1[b * HT + j];
        for (int64_t k = 0; k < C; ++k) {  // c1 = gb0 . u1, c2 = beta0 . u1 + cb1 (u1 rows are contiguous in j)
          const float* u = in.u1 + (b * C + k) * HT;
          for (int64_t j = 0; j < HT; ++j) {
            v.c1[j] += wv.gb0[k] * u[j];
            v.c2[j] += beta0[k] * u[j];
          }
        }
        for (int64_t h = 0; h < H; ++h)
          for (int64_t u = 0; u < Tu; ++u) {
            const int64_t q = h * Tu + u;
            const float* uk = in.ukf + (b * H * Tu + q) * C;
            v.f0[q] = dot(wv.zb0g1.data(), uk, C);
            v.f1[q] = dot(wv.vbg1.data(), uk, C);
            float bq = 0.f;
            for (int64_t dd = 0; dd < dh; ++dd) bq += bkf[h * dh + dd] * in.qf[(b * Tu + u) * Di + h * dh + dd];
            v.f2[q] = dot(beta1, uk, C) + bq * scale;
          }
      }
    }
    // U: the Gram matrix Y Y^T of [Z0; R1c] as its upper triangle, off-diagonal doubled
    gram_upper(c.isa, pr.Y.p, YT.p, HT2, C, Wm.p, B == 1);
    for (int64_t i = 0; i < HT2; ++i)
      for (int64_t j = 0; j < HT2; ++j) v.uq[i * HT2 + j] = j < i ? 0.f : (j == i ? 1.f : 2.f) * Wm.p[i * HT2 + j];
    v.s[0] = dot(wv.b0c.data(), g0, C);             // b0c . g0
    v.s[1] = dot(wv.zb0.data(), wv.zb0.data(), C);  // b0c^T S b0c
    v.s[2] = dot(wv.b0c.data(), wvec.data(), C);    // b0c . w
    v.s[3] = dot(wv.vb.data(), wv.vb.data(), C);    // |v|^2
    v.s[4] = mean_b;                                // mean(beta0) + mean(b1)
  };
  if (B == 1) {
    one(0);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) one(b);
}

void proj_pass_finish(const Ctx& c, const DecoderParams& p, const ProjDims& d, const float* rows_g1,
                      const float* acc, float* z, float* extra) {
  const int64_t B = c.B, C = c.C, H = d.H, dh = d.dh, Di = H * dh, Tu = d.Tu, HT = d.ht(), HU = d.hu();
  const int64_t HUq = d.acc_cols(), rows = d.acc_rows();
  const float* beta1 = p.layers[1].n4.b;
  const WeightVectors wv(p, C);

#pragma omp parallel for schedule(static) if (B > 1)
  for (int64_t b = 0; b < B; ++b) {
    const float *Z0g1 = rows_g1 + b * 2 * HT * C, *R1g1 = Z0g1 + HT * C;
    const float* ab = acc + b * rows * HUq;
    AlignedFloats V;  // [HU, 2 HT]: sums of r1 r0 P0 | r1 P1 per query
    V.alloc(HU * 2 * HT, false);
    for (int64_t q = 0; q < HU; ++q)
      for (int64_t r = 0; r < 2 * HT; ++r) V.p[q * 2 * HT + r] = ab[(Di + r) * HUq + q];
    float* zb = z + b * HU * C;
    for (int64_t q = 0; q < HU; ++q) {
      const float srr = ab[(Di + 2 * HT) * HUq + q], sr = ab[(Di + 2 * HT + 1) * HUq + q];
      for (int64_t k = 0; k < C; ++k) zb[q * C + k] = beta1[k] + srr * wv.zb0g1[k] + sr * wv.vbg1[k];
    }
    gemm(c.isa, V.p, 2 * HT, HU, HT, Z0g1, C, C, zb, C);
    gemm(c.isa, V.p + HT, 2 * HT, HU, HT, R1g1, C, C, zb, C);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t u = 0; u < Tu; ++u)
        for (int64_t dd = 0; dd < dh; ++dd)
          extra[((b * H + h) * Tu + u) * dh + dd] = ab[(h * dh + dd) * HUq + h * Tu + u];
  }
}

}  // namespace samfast::cpu
