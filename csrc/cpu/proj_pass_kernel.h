// The decoder's second image-sized pass (layer 1's image->token attention + LayerNorm, then the final
// token->image attention) for mask-free prompts, from per-image projections instead of the [N, C] image rows.
//
// Layer 0's image->token output is xb = LN0(y0), y0 = x0 + P0 R0 + b0, and layer 1's is x1 = LN1(y1),
// y1 = xb + P1 R1 + b1 (P: a row's attention probabilities over the (head, token) pairs, R: the token-side rows
// W_o,h v_t,h). Written with centred vectors (J: minus the mean, G0 / G1: diag of the LayerNorm weights),
//   xb = r0 G0 (J x0 + J R0^T P0 + J b0) + beta0,
// every quantity the pass needs is an affine form in P0 / P1 plus a projection of J x0 that does not depend on
// the prompt. Per image (proj_pass_image): A1 = Wq1 G0 Jx0, A2 = Wq1 pe, A3 = Wo0^T J G0 J G0 Jx0,
// A4 = Wo1^T J G0 Jx0, A5 = Wkf G1 J G0 Jx0, A6 = Wkf pe, A7 = Wvf G1 J G0 Jx0 (Di values each, per head dh) and
// e = {G0 . Jx0, |J G0 Jx0|^2, (J G0 Jx0) . (J G0 J b0), (G0 Jx0) . J (beta0 + b1)}. Per row the pass then needs
// head-block products of A1..A6 with the prompt's per-head vectors (dh MACs per score instead of C), two small
// GEMMs of P0 and P1 with per-prompt matrices (ProjPrompt), and the LayerNorm statistics of y1 from their
// quadratic forms. The first pass's LayerNorm statistics come the same way (proj_stats0_cpu: A8 = Wo0^T Jx0 and
// A0 = q0, the cached layer-0 queries), so neither xb nor x1 is ever formed, except for the rare rows where an
// expansion would lose precision (cancellation): those are recomputed exactly from x0.
//
// Layouts: P0 / P1 rows are token-major (column j = t * H + h, as the image->token kernel writes them) and so
// are the pass's per-pixel vectors over (token, head); the final attention's queries are q = h * Tu + u.
#pragma once
#include <cstdint>

namespace samfast::cpu {

constexpr int64_t kProjSlots = 8;      // token rows per head of the per-head vectors (T, Tu <= 8)
constexpr int64_t kProjArrays = 7;     // A1 .. A7 (the second pass's block)
constexpr int64_t kProjScalars = 8;    // per block row: e1 .. e4 (second pass) / e5 .. e7 (first pass) + padding

// The per-image block is two regions of pixel blocks [N / 32, width, 32], each streamed by one pass:
//   first pass (proj_stats0_cpu):  A8 | A0 | e5 = |Jx0|^2, e6 = mean(x0), e7 = Jb0 . Jx0    width 2 Di + 8
//   second pass (proj_pass_cpu):   A1 .. A7 | e1 .. e4                                       width 7 Di + 8
inline int64_t proj_stats0_width(int64_t Di) { return 2 * Di + kProjScalars; }
inline int64_t proj_pass_width(int64_t Di) { return kProjArrays * Di + kProjScalars; }
// Floats per image row of the whole block (the first region comes first: N * proj_stats0_width floats).
inline int64_t proj_image_width(int64_t Di) { return proj_stats0_width(Di) + proj_pass_width(Di); }

// Per-prompt matrices (HT = H * T, HU = H * Tu rounded up to 8 as HUp), stored transposed ([outputs, HT]):
//   W0 [HT + HUp + 8, HT] applied to P0: M1 (s1) | F0 (final scores) | R0c g0 1, R0c S b0c, R0c w (+pad)
//   W1 [HUp + 8, HT]      applied to P1: F1 | mean rows of R1, R1c v, R1c g0 b0c (+pad)
//   U  [2 HT, 2 HT]  the quadratic form of p = [r0 P0; P1] in |y1c|^2, upper triangle (off-diagonal doubled)
struct ProjDims {
  int64_t H = 0, dh = 0, T = 0, Tu = 0;
  int64_t ht() const { return H * T; }
  int64_t hu() const { return H * Tu; }
  int64_t hup() const { return (H * Tu + 7) / 8 * 8; }
  int64_t w0_rows() const { return ht() + hup() + 8; }
  int64_t w1_rows() const { return hup() + 8; }
  // accumulator rows (transposed, one column per final-attention query): A7 part (Di) | r1 r0 P0 (HT) |
  // r1 P1 (HT) | r1 r0, r1 (+pad)
  int64_t acc_rows() const { return H * dh + 2 * ht() + 8; }
  int64_t acc_cols() const { return hup() + 8; }
  // floats of one ProjPrompt block (see proj_prompt_views)
  int64_t prompt_floats() const;
};

// One prompt's operands, views into a block of ProjDims::prompt_floats() floats (64-byte aligned pieces).
struct ProjPrompt {
  float* kq1;  // [H, 8, dh]  layer 1's image->token keys / sqrt(dh), per head (A1, A2 products)
  float* kv0;  // [H, 8, dh]  layer 0's image->token values (A3)
  float* kv1;  // [H, 8, dh]  layer 1's image->token values (A4)
  float* kqf;  // [H, 8, dh]  final attention's queries q_proj(token) / sqrt(dh) (A5, A6)
  float* w0;   // [w0_rows, HT]
  float* w1;   // [w1_rows, HT]
  float* uq;   // [2 HT, 2 HT]
  float* c1;   // [HT]  s1 = r0 (A1 k + P0 M1 + c1) + A2 k + c2
  float* c2;   // [HT]
  float* f0;   // [HUp]  sf = r1 (r0 (A5 q + P0 F0 + f0) + P1 F1 + f1) + A6 q + f2
  float* f1;   // [HUp]
  float* f2;   // [HUp]
  float* s;    // [16] scalars: b0c . g0, b0c^T S b0c, b0c . w, |v|^2, mean(beta0) + mean(b1), |b0c|^2, mean(b0)
  // layer 0 (proj_stats0_cpu): keys / sqrt(dh) per head, the quadratic form of P0 in |y0 - mean|^2 (upper triangle
  // of R0c R0c^T, off-diagonal doubled) and the vector rows mean(R0 rows), R0c . b0c (+pad)
  float* kq0;  // [H, 8, dh]
  float* u0;   // [HT, HT]
  float* w8;   // [8, HT]
};
ProjPrompt proj_prompt_views(const ProjDims& d, float* block);

// Exact recomputation of a row's layer-0 / layer-1 outputs from x0 (rows whose expansions would cancel, and the
// mask head's direct product): y0 = x0 + R0^T p0 + b0, xb = LN0(y0), y1 = xb + R1^T p1 + b1, x1 = LN1(y1).
struct ProjExact {
  int64_t N = 0, C = 0, HT = 0;
  const float* x0 = nullptr;                            // [N, C]
  const float *r0 = nullptr, *r1 = nullptr;             // [B, HT, C] token-major rows (not centred)
  const float *b0 = nullptr, *b1 = nullptr;             // [C] out_proj biases
  const float *g0 = nullptr, *beta0 = nullptr, *g1 = nullptr, *beta1 = nullptr;  // LayerNorm weights [C]
  float eps = 1e-5f;
};
// {mean, rstd} of y0 (p1 == nullptr) or of y1 for row n of batch b (p0, p1: that row's [HT] token-major);
// x1 (optional, [C]): LN1(y1) * g1 + beta1.
void proj_exact_row(const ProjExact& e, int64_t b, int64_t n, const float* p0, const float* p1, float* stats,
                    float* x1 = nullptr);

struct ProjStats0Args {
  int64_t B = 0, N = 0, C = 0;
  ProjDims d;
  const float* img = nullptr;  // per-image block, as ProjPassArgs
  int64_t ld_img = 0;
  const float* prompts = nullptr;  // [B, prompt_floats] (kq0, kv0, u0, w8, s filled)
  ProjExact exact;
  bool force_exact = false;  // every row through proj_exact_row (tests: SAMFAST_PROJ_EXACT=1)
  float* p0 = nullptr;   // out [B, N, HT] token-major: layer 0's image->token probabilities
  float* st0 = nullptr;  // out [B, N, 2] {mean, rstd} of y0
};

// Layer 0's image->token probabilities and the LayerNorm statistics of y0 = x0 + R0^T P0 + b0 (without forming y0).
void proj_stats0_cpu(const ProjStats0Args& a);
// The same for rows [n0, n1) of batch b only (multiples of 32). (Run as the row producer of layer 1's
// token->image pass, which reads those rows right after, it measured no faster than as a pass of its own.)
void proj_stats0_rows(const ProjStats0Args& a, int64_t b, int64_t n0, int64_t n1);

struct ProjPassArgs {
  int64_t B = 0, N = 0, C = 0;
  ProjDims d;
  const float* img = nullptr;   // [N / 32, ld_img, 32] per-image block (proj_pass_image)
  int64_t ld_img = 0;
  const float* p0 = nullptr;    // [B, N, HT] token-major
  const float* st0 = nullptr;   // [B, N, 2] {mean, rstd} of y0
  const float* prompts = nullptr;  // [B, prompt_floats]
  ProjExact exact;              // rows whose statistics would lose precision
  bool force_exact = false;     // every row through proj_exact_row (tests: SAMFAST_PROJ_EXACT=1)
  float* p1 = nullptr;          // out [B, N, HT] token-major
  float* st1 = nullptr;         // out [B, N, 2] {mean, rstd} of y1
  float* acc = nullptr;         // out [B, acc_rows, acc_cols]: softmax-weighted sums over the pixels
};

// OpenMP over (batch, pixel ranges) with an online softmax per final-attention query, merged at the end.
void proj_pass_cpu(const ProjPassArgs& a);

// x1 for all rows of all prompts into x1 [B, N, C] (proj_exact_row), for the mask head's direct product where its
// fold cannot be used (rows with a large |mean| * rstd).
void proj_materialize_x1(const ProjExact& e, int64_t B, const float* p0, const float* p1, float* x1);

}  // namespace samfast::cpu
