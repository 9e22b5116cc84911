// Token-side steps of the whole-decoder kernel (cached_decoder_kernel.cpp): linears, LayerNorms, the token self
// attention, the token->image attentions (cached, folded, or from the per-image kv block: t2i_ln), the image->token
// operands, the 3-layer MLP heads. Token-side rows are r = b * T + t ([B * T, C] row-major); per-head slices of a
// [rows, Di] projection are columns h * dh .. h * dh + dh.
#pragma once
#include <cstdint>

#include "cpu/cached_decoder_params.h"
#include "cpu/image_to_token_kernel.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"
#include "cpu/token_to_image_kernel.h"

namespace samfast::cpu::decoder_steps {

using small_gemm::Isa;

// ---- token-side building blocks -------------------------------------------------------------

struct Ctx {
  Isa isa;
  int64_t B, C, H, Di;
  float eps;
};

// Multiply-adds (rows * in * outp) from which a linear splits its work over the threads; below, one thread runs it.
constexpr int64_t kLinearParallelMacs = int64_t{1} << 18;

// y[rows, 0:out] = x[rows, in] @ W^T + b (y row stride ldy >= outp; columns out..outp get 0), ReLU optional.
void linear(const Ctx& c, const Slot& L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
            bool relu = false);

// C[R, ncols] += A[R, K] @ W^T[k0:k0+K, col0:col0+ncols] of a linear (panel by panel; col0, ncols % 8 == 0).
void gemm_wt(const Ctx& c, const Slot& L, const float* A, int64_t lda, int64_t R, int64_t k0, int64_t K, int64_t col0,
             int64_t ncols, float* C, int64_t ldc);

// q = LayerNorm(q + a) row by row ([rows, C]).
void add_norm(const Ctx& c, float* q, const float* a, int64_t rows, const Slot& n);

// Token self attention (internal dim C): out[B*T, C] = o_proj(softmax(q k^T / sqrt(dh)) v).
void self_attention(const Ctx& c, const AttnP& a, const float* qin, const float* kin, const float* vin, int64_t T,
                    float* out, float* scratch /* [4, B*T, C] */);

// Layer 0 token->image attention against the cached per-head k0 [H, dh, N] / v0 [H, N, dh]:
// out [B*T, C] = o_proj(softmax(q_h k0_h / sqrt(dh)) v0_h).
void t2i_cached(const Ctx& c, const AttnP& a, const float* qt, int64_t T, const float* k0, const float* v0,
                int64_t N, float* out, float* qh /* [B*T, Di] */, float* o /* [B*T, Di] */);

// Token->image attention with the k / v projections folded into the token side (fast_decoder._t2i), in three
// steps so the image-sized middle one can be fused with the kernel that writes x:
//   t2i_fold:   u[b, h*T + t] = Wk_h^T q_h[b, t] / sqrt(dh)     (q_h = q_proj(qt))
//   t2i_attend: z = token_to_image_cpu(u, x, pe)               (keys x + pe, values x)
//   t2i_unfold: out = o_proj(Wv_h z + bv)
struct T2iBufs {
  float* qh;  // [B*T, Di]
  float* o;   // [B*T, Di]
  AlignedFloats& u;
  AlignedFloats& z;
};

void t2i_fold(const Ctx& c, const AttnP& a, const float* qt, int64_t T, T2iBufs& w);

void t2i_attend(const Ctx& c, int64_t T, const float* x, int64_t Bx, const float* pe, int64_t N, T2iBufs& w,
                const RowProducer& produce = {});

// extra (optional, t2i_ln): [B, H, Tx, ldx], row (b, h, t)'s first dh values are added to head h's v_proj
// output of token t before o_proj.
void t2i_unfold(const Ctx& c, const AttnP& a, int64_t T, T2iBufs& w, float* out /* [B*T, C] */,
                const float* extra = nullptr, int64_t Tx = 0, int64_t ldx = 0);

// Blocks of the per-image kv block of g (cached_decoder_fold_image): Kc | Kpe | Vc, Di columns each.
constexpr int64_t kKvBlocks = 3;

// dst[r, :] = src[r, :] - mean(src[r, :]) for `rows` rows of C (mean and difference in double; dst may be src).
void center_rows(const float* src, int64_t rows, int64_t C, float* dst);

// Layer 1's token->image attention over layer 0's image->token output without reading it (token_to_image_ln_kernel.h):
// x_n = LN(y_n) with y_n = img_n + R0^T p0_n + ob0, from the per-image kv block (Kc | Kpe | Vc, [N, 3 Di]) and the
// rows' p0 / {mean, rstd}, which the fused layer-0 image->token pass (`produce`) writes just before they are read.
// Rc: layer 0's image->token rows R0, centred [B, HT, C]; obc: its out_proj bias, centred [C] (center_rows).
void t2i_ln(const Ctx& c, const AttnP& a, const float* obc, const Slot& norm0, const float* Rc, const float* qt,
            int64_t T, T2iBufs& w, const float* p0, const float* st0, const float* kv, int64_t N,
            const RowProducer& produce, float* out /* [B*T, C] */);

// Image->token attention + residual + norm4 (fast_decoder._i2t): the token-side operands u / cb / r for
// image_to_token_cpu, which then writes x_out [B, N, C] (may be x itself when Bx == B).
// cached: layer 0, q_proj(x + pe) precomputed as q0 [N, Di] (u block diagonal over heads, cb = 0).
struct I2tBufs {
  float* kh;  // [B*T, Di]
  float* vh;  // [B*T, Di]
  AlignedFloats &ut, &u, &cb, &r;
};

ImageToTokenArgs i2t_prepare(const Ctx& c, const AttnP& a, const Slot& norm, const float* x, int64_t Bx,
                             const float* pe, const float* q0, int64_t N, const float* k_tok, const float* v_tok,
                             int64_t T, float* x_out, I2tBufs& w);

// Mask prompts: xd[b, n, c] = features[c, n] + dense[b, c, n] (token-major image side; C, N % 8 == 0).
// Reading 8 channel rows at a time keeps the strided accesses in few cache sets (a scalar transpose over
// 16 channel rows, N floats apart, ran at ~1 ms for 64 x 64 x 256).
void add_transpose(Isa isa, const float* features, const float* dense, int64_t B, int64_t C, int64_t N, float* xd);

// Three-layer ReLU MLP (IoU head, hypernetworks) on `rows` rows of stride ldx -> y [rows, ldy].
void mlp3(const Ctx& c, const Slot* L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
          float* h1, float* h2);

}  // namespace samfast::cpu::decoder_steps
