// Token->image attention over image tokens that are a LayerNorm of (cached image + a rank-HT update), without
// forming them: SAM's layer-1 token->image attention, whose keys / values are layer 0's image->token output
//   x_n = r_n * (y_n - mean(y_n)) * gamma + beta,  y_n = img_n + R^T p_n + ob
// (p_n [HT]: that attention's probabilities, R [HT, C]: its per-(token, head) output rows, r_n: the row's rstd).
// With every part centred on its own (img^c, R^c rows, ob^c), per query column j = (head h, token t) and
// image row n, with q_j the scaled query [dh] and u_j = Wk_h^T q_j, u~_j = u_j * gamma:
//   score[n, j] = q_j . (r_n Kc[n, h] + Kpe[n, h]) + r_n (G_j . p_n + alpha_j)   (+ u_j . beta, cancels)
//     Kc = (img^c * gamma) Wk^T, Kpe = pe Wk^T (per image, [N, Di]); G_j = R^c u~_j [HT], alpha_j = u~_j . ob^c
//   values (v_proj without bias, head h):  sum_n pi[n, j] Wv_h x_n
//     = A_j + Wv_h (gamma * (R^cT B_j + ob^c s_j) + beta),
//     A_j = sum_n pi r_n Vc[n, h], B_j = sum_n pi r_n p_n, s_j = sum_n pi r_n;  Vc = (img^c * gamma) Wv^T.
// So each image row costs ~2 Q (HT + dh) MACs for all Q = H * Tp columns (padded) instead of 2 HT C for reading
// the row as keys and values.
// This kernel streams the rows (online softmax, key ranges merged as in token_to_image_cpu) and returns the
// normalised per-column sums {A_j, B_j, s_j}; the caller finishes on the token side.
#pragma once
#include <cstdint>

#include "cpu/token_to_image_kernel.h"

namespace samfast::cpu {

struct TokenToImageLnArgs {
  int64_t B = 0, N = 0, H = 0, Tp = 0, dh = 0, HT = 0;  // columns Q = H * Tp, j = h * Tp + t (Tp % 8 == 0)
  const float* q = nullptr;      // [B, H * dh, Tp]  scaled queries per head, transposed (zero for t >= T)
  const float* gT = nullptr;     // [B, HT, Q]       G^T
  const float* alpha = nullptr;  // [B, Q]
  const float* kv = nullptr;     // [N, ldkv] image rows: Kc at column kc, Kpe at kpe, Vc at vc (Di = H * dh each)
  int64_t ldkv = 0, kc = 0, kpe = 0, vc = 0;
  const float* p = nullptr;      // [B, N, HT]  probabilities p_n
  const float* stats = nullptr;  // [B, N, 2]   {mean, rstd} of y_n (only rstd is read)
  float* out = nullptr;          // [B, Q, out_width(dh, HT)]: per column j: A_j [dh], B_j [HT], s_j
};

// Columns of one output row: dh + HT + 1, padded to a multiple of 8.
int64_t token_to_image_ln_out_width(int64_t dh, int64_t HT);

// All pointers contiguous float32 (kv with row stride ldkv); N > 0, dh % 8 == 0, HT % 8 == 0. OpenMP over
// (batch, key ranges). produce(b, n0, n1) as in token_to_image_cpu: called right before rows [n0, n1) of
// p / stats (batch b) are read, so the kernel writing them can run fused.
void token_to_image_ln_cpu(const TokenToImageLnArgs& a, const RowProducer& produce = {});

}  // namespace samfast::cpu
