// Whole mask-decoder forward on a cached image (see cached_decoder_kernel.h): the token-side steps
// (cached_decoder_steps.h) around the image-sized fused kernels.
#include "cpu/cached_decoder_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "cpu/cached_decoder_params.h"
#include "cpu/cached_decoder_steps.h"
#include "cpu/image_to_token_kernel.h"
#include "cpu/mask_head_kernel.h"
#include "cpu/phase_timer.h"
#include "cpu/proj_pass_prep.h"
#include "cpu/proj_tile.h"
#include "cpu/small_gemm.h"
#include "cpu/token_to_image_kernel.h"
#include "cpu/token_to_image_ln_kernel.h"
#include "tensor_ref.h"

namespace samfast::cpu {

using namespace small_gemm;
using namespace decoder_steps;

void cached_decoder_cpu(const CachedDecoderArgs& a) {
  const DecoderDims& d = a.d;
  check_decoder_dims(d);
  if (a.B == 0) return;
  const DecoderParams p = bind_params(d, a.packed);
  SAMFAST_PHASE_BEGIN("cached_decoder_cpu");
  const Ctx c{pick_isa(), a.B, d.C, d.H, d.Di, a.eps};
  const int64_t B = a.B, T = a.T, C = d.C, Di = d.Di, N = a.h * a.w, R = B * T, H = d.H;
  const int64_t K = a.multimask ? d.M - 1 : 1, Tu = 1 + K;
  const int64_t Tmax = std::max(T, Tu);
  AlignedFloats q, tmp, scratch, hid, qh, o, u, z, kh_buf, vh_buf, xb;
  q.alloc(R * C, false);
  tmp.alloc(R * C, false);
  scratch.alloc(4 * R * C, false);
  hid.alloc(R * std::max({d.Mlp, round_up(d.Hid, 8), C}), false);
  qh.alloc(R * Di, false);
  o.alloc(R * Di, false);
  u.alloc(B * H * Tmax * C, false);
  z.alloc(B * H * Tmax * C, false);
  kh_buf.alloc(R * Di, false);
  vh_buf.alloc(R * Di, false);
  xb.alloc(B * N * C, false);  // layer 0's image-token output, then layer 1's in place
  AlignedFloats xd;  // mask prompts: features + dense, token-major [B, N, C]
  if (a.dense) {
    xd.alloc(B * N * C, false);
    add_transpose(c.isa, a.features, a.dense, B, C, N, xd.p);
  }
  const float* P = a.tokens;  // token positional encoding = the initial tokens
  std::memcpy(q.p, a.tokens, R * C * sizeof(float));
  float* qpe = hid.p;
  float* qt = scratch.p + 3 * R * C;  // shares the self-attention's last scratch slot (not live across)
  T2iBufs tw{qh.p, o.p, u, z};
  AlignedFloats u_i, ut_i, cb_i, r_i;  // image->token operands: live while its fused pass runs
  u_i.alloc(B * std::max(C, Di) * H * T, false);  // [B, Cq, H*T], Cq = Di (cached layer 0) or C
  ut_i.alloc(B * T * std::max(H * C, Di), false);
  cb_i.alloc(B * H * T, false);
  r_i.alloc(B * H * T * C, false);
  I2tBufs iw{kh_buf.p, vh_buf.p, ut_i, u_i, cb_i, r_i};
  // The image side changes only in the image->token steps. Their outputs are consumed by the next
  // token->image attention, whose queries do not depend on them, so each image->token pass runs fused into
  // the next token->image pass (rows produced right before they are read): layer 0's into layer 1's,
  // layer 1's (in place) into the final one.
  // ---- layer 0 (skip_first_layer_pe: queries = self_attn(q, q, q), no residual; cached image side)
  const LayerP& L0 = p.layers[0];
  self_attention(c, L0.self_attn, q.p, q.p, q.p, T, tmp.p, scratch.p);
  std::memcpy(q.p, tmp.p, R * C * sizeof(float));
  add_norm(c, q.p, nullptr, R, L0.n1);
  add(c.isa, q.p, P, qpe, R * C);
  if (a.dense) {  // mask prompt: the image side differs per prompt, no layer-0 cache
    t2i_fold(c, L0.t2i, qpe, T, tw);
    t2i_attend(c, T, xd.p, B, a.pe, N, tw);
    t2i_unfold(c, L0.t2i, T, tw, tmp.p);
  } else {
    t2i_cached(c, L0.t2i, qpe, T, a.k0, a.v0, N, tmp.p, qh.p, o.p);
  }
  add_norm(c, q.p, tmp.p, R, L0.n2);
  linear(c, L0.mlp1, q.p, C, R, hid.p, d.Mlp, true);
  linear(c, L0.mlp2, hid.p, d.Mlp, R, tmp.p, C);
  add_norm(c, q.p, tmp.p, R, L0.n3);
  SAMFAST_PHASE("layer 0 token side (incl. cached token->image)");
  add(c.isa, q.p, P, qt, R * C);
  // Folded first ConvT of the mask head (MaskHeadFold; mask-free prompts with the per-image g): the image->token
  // passes keep their probabilities and LayerNorm statistics, and R0 A'' / R1 A' are formed per prompt. Only for
  // few tokens: per pixel the fold costs 2 * H * (T - 1) * n1p MACs against C * n1p for the direct product, plus its
  // own passes; measured slower from T ~ 12 on (SAM: H * T <= C / 4 means T <= 8, a point or a box).
  const int64_t HT = H * T, n1p = p.fold.N1p;
  const bool fold = a.g && !a.dense && 4 * HT <= C;
  // Layer 1's token->image attention from the per-image kv block (t2i_ln): per image row it costs ~2 Q (HT + dh)
  // MACs (Q = H * round_up(T, 8) columns) against 2 HT C for reading the rows; used where that is at most half,
  // since its small GEMMs run less efficiently (SAM: T <= 8; measured slower at T = 9, even at T = 12..16).
  const int64_t Qln = H * round_up(T, 8), dh1 = Di / H;
  const bool ln1 = a.g && !a.dense && HT % 8 == 0 && dh1 % 8 == 0 && 2 * Qln * (HT + dh1) <= HT * C;
  // The second image-sized pass from per-image projections (proj_pass_kernel.h) where the per-image block exists.
  const bool proj = fold && ln1 && proj_pass_applies(N, H, T, Tu);
  AlignedFloats P0, P1, st0, st1, M01, Mfold, c01b;
  if (fold || ln1) {
    P0.alloc(B * N * HT, false);
    st0.alloc(B * N * 2, false);
  }
  const int64_t Kf = H * (T - 1);  // MaskHeadFold::K
  if (fold) {
    P1.alloc(B * N * HT, false);
    st1.alloc(B * N * 2, false);
    M01.alloc(B * 2 * HT * n1p, false);  // per prompt M0 = R0 A'' then M1 = R1 A' ([HT, n1p] each)
    Mfold.alloc(B * 2 * Kf * n1p, false);
    c01b.alloc(2 * B * n1p, false);  // c0b [B, n1p], then c1b [B, n1p]
  }
  // M0 (layer 0, Aw = A'') or M1 (layer 1, Aw = A') of every prompt; after layer 1, the MaskHeadFold operands
  // (the GEMM's column panels are split over the threads: with one prompt, it would otherwise run on one)
  constexpr int64_t kFoldCols = 64;
  const int64_t fold_parts = (n1p + kFoldCols - 1) / kFoldCols;
  auto fold_update = [&](const float* R /* [B, HT, C] */, const float* Aw /* [C, n1p] */, int64_t layer) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t part = 0; part < fold_parts; ++part) {
        const int64_t j0 = part * kFoldCols, nj = std::min(kFoldCols, n1p - j0);
        float* M = M01.p + (b * 2 + layer) * HT * n1p + j0;
        for (int64_t r = 0; r < HT; ++r) std::fill(M + r * n1p, M + r * n1p + nj, 0.f);
        gemm(c.isa, R + b * HT * C, C, HT, C, Aw + j0, n1p, nj, M, n1p);
      }
    if (layer == 1)
#pragma omp parallel for schedule(static) if (B > 1)
      for (int64_t b = 0; b < B; ++b) {
        const float* M = M01.p + (b * 2 + 1) * HT * n1p;
        mask_head_fold_prepare(M - HT * n1p, M, H, T, n1p, p.fold.c0, p.fold.c1, Mfold.p + b * 2 * Kf * n1p,
                               c01b.p + b * n1p, c01b.p + (B + b) * n1p);
      }
  };
  ImageToTokenArgs ia0 = a.dense ? i2t_prepare(c, L0.i2t, L0.n4, xd.p, B, a.pe, nullptr, N, qt, q.p, T, xb.p, iw)
                                 : i2t_prepare(c, L0.i2t, L0.n4, a.x0, 1, a.pe, a.q0, N, qt, q.p, T, xb.p, iw);
  if (fold || ln1) {
    ia0.p_out = P0.p;
    ia0.ln_stats = st0.p;
  }
  if (fold) fold_update(iw.r.p, p.fold.App, 0);
  AlignedFloats Rc, obc;  // layer 0's image->token rows and out_proj bias, centred (t2i_ln)
  if (ln1) {
    Rc.alloc(B * HT * C, false);
    obc.alloc(C, false);
    center_rows(iw.r.p, B * HT, C, Rc.p);
    center_rows(L0.i2t.o.b, 1, C, obc.p);
  }
  // proj: layer 0's image->token probabilities and statistics without forming its output (proj_stats0_cpu), the
  // second pass from the per-image projections (proj_pass_cpu); xb is then only written for the mask head's direct
  // product, if a row needs it.
  const ProjDims pd{H, Di / H, T, Tu};
  AlignedFloats prompts, r0_saved;
  ProjTokenInputs pin;
  ProjExact exact;
  const bool force_exact = proj && proj_tile::force_exact();
  std::unique_ptr<ImageToTokenRows> i2t0;
  if (proj) {
    r0_saved.alloc(B * HT * C, false);  // the image->token buffers are reused by layer 1
    std::memcpy(r0_saved.p, iw.r.p, B * HT * C * sizeof(float));
    pin.r0 = r0_saved.p; pin.r0c = Rc.p; pin.k0 = iw.kh; pin.v0 = iw.vh;
    prompts.alloc(B * pd.prompt_floats(), false);
    proj_pass_prompts0(c, p, pd, pin, prompts.p);
    exact.N = N; exact.C = C; exact.HT = HT; exact.x0 = a.x0; exact.r0 = r0_saved.p;
    exact.b0 = L0.i2t.o.b; exact.b1 = p.layers[1].i2t.o.b; exact.g0 = L0.n4.w; exact.beta0 = L0.n4.b;
    exact.g1 = p.layers[1].n4.w; exact.beta1 = p.layers[1].n4.b; exact.eps = c.eps;
    ProjStats0Args sa;
    sa.B = B; sa.N = N; sa.C = C; sa.d = pd;
    sa.img = a.g + N * (n1p + kKvBlocks * Di); sa.ld_img = proj_stats0_width(Di);
    sa.prompts = prompts.p; sa.exact = exact; sa.p0 = P0.p; sa.st0 = st0.p;
    sa.force_exact = force_exact;
    proj_stats0_cpu(sa);
  } else {
    i2t0 = std::make_unique<ImageToTokenRows>(ia0);
  }
  SAMFAST_PHASE("layer 0 image->token operands");
  // ---- layer 1
  const LayerP& L1 = p.layers[1];
  add(c.isa, q.p, P, qpe, R * C);
  self_attention(c, L1.self_attn, qpe, qpe, q.p, T, tmp.p, scratch.p);
  add_norm(c, q.p, tmp.p, R, L1.n1);
  SAMFAST_PHASE("layer 1 self-attention");
  add(c.isa, q.p, P, qpe, R * C);
  RowProducer run_i2t0;
  if (i2t0) run_i2t0 = [&](int64_t b, int64_t n0, int64_t n1) { i2t0->run(b, n0, n1); };
  const float* kv = a.g ? a.g + N * n1p : nullptr;  // g's kv block
  if (ln1) {
    t2i_ln(c, L1.t2i, obc.p, L0.n4, Rc.p, qpe, T, tw, P0.p, st0.p, kv, N, run_i2t0, tmp.p);
  } else {
    t2i_fold(c, L1.t2i, qpe, T, tw);
    t2i_attend(c, T, xb.p, B, a.pe, N, tw, run_i2t0);
    t2i_unfold(c, L1.t2i, T, tw, tmp.p);
  }
  SAMFAST_PHASE("fused layer-0 image->token + layer-1 token->image");
  add_norm(c, q.p, tmp.p, R, L1.n2);
  linear(c, L1.mlp1, q.p, C, R, hid.p, d.Mlp, true);
  linear(c, L1.mlp2, hid.p, d.Mlp, R, tmp.p, C);
  add_norm(c, q.p, tmp.p, R, L1.n3);
  add(c.isa, q.p, P, qt, R * C);
  // in place: image_to_token reads a tile's rows of x before writing them
  ImageToTokenArgs ia1 = i2t_prepare(c, L1.i2t, L1.n4, xb.p, B, a.pe, nullptr, N, qt, q.p, T, xb.p, iw);
  if (fold) {
    ia1.p_out = P1.p;
    ia1.ln_stats = st1.p;
    fold_update(iw.r.p, p.fold.Ap, 1);
  }
  SAMFAST_PHASE("layer 1 token side + image->token operands");
  // ---- final token->image attention, only for the tokens read afterwards: IoU + requested mask tokens
  const int64_t Ru = B * Tu;
  float* qu = scratch.p;          // [B*Tu, C]
  float* tu = scratch.p + R * C;  // [B*Tu, C] queries + pe
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Tu; ++i) {
      const int64_t t = i == 0 ? 0 : (a.multimask ? 1 + i : 1);
      std::memcpy(qu + (b * Tu + i) * C, q.p + (b * T + t) * C, C * sizeof(float));
      add(c.isa, q.p + (b * T + t) * C, P + (b * T + t) * C, tu + (b * Tu + i) * C, C);
    }
  t2i_fold(c, p.final_attn, tu, Tu, tw);
  if (proj) {
    pin.r1 = iw.r.p; pin.k1 = iw.kh; pin.v1 = iw.vh; pin.u1 = iw.u.p; pin.cb1 = iw.cb.p; pin.qf = tw.qh; pin.ukf = tw.u.p;
    AlignedFloats acc, extra, rows_g1;
    rows_g1.alloc(B * 2 * HT * C, false);
    proj_pass_prompts(c, p, pd, pin, prompts.p, rows_g1.p);
    SAMFAST_PHASE("final token->image operands");
    exact.r1 = iw.r.p;
    ProjPassArgs pa;
    pa.B = B; pa.N = N; pa.C = C; pa.d = pd;
    pa.img = a.g + N * (n1p + kKvBlocks * Di + proj_stats0_width(Di)); pa.ld_img = proj_pass_width(Di);
    pa.p0 = P0.p; pa.st0 = st0.p; pa.prompts = prompts.p; pa.exact = exact; pa.p1 = P1.p; pa.st1 = st1.p;
    pa.force_exact = force_exact;
    acc.alloc(B * pd.acc_rows() * pd.acc_cols(), false);
    pa.acc = acc.p;
    proj_pass_cpu(pa);
    extra.alloc(B * H * Tu * (Di / H), false);
    proj_pass_finish(c, p, pd, rows_g1.p, acc.p, tw.z.p, extra.p);
    t2i_unfold(c, p.final_attn, Tu, tw, tmp.p, extra.p, Tu, Di / H);
    // the mask head reads x1 rows where its fold cannot be used: form them (rare)
    bool direct = false;
    for (int64_t r = 0; r < B * N && !direct; ++r)
      for (const float* st : {st0.p, st1.p}) direct |= !mask_head_fold_row_ok(st + 2 * r);
    if (direct) proj_materialize_x1(exact, B, P0.p, P1.p, xb.p);
  } else {
    const ImageToTokenRows i2t1(ia1);
    SAMFAST_PHASE("final token->image operands");
    t2i_attend(c, Tu, xb.p, B, a.pe, N, tw, [&](int64_t b, int64_t n0, int64_t n1) { i2t1.run(b, n0, n1); });
    t2i_unfold(c, p.final_attn, Tu, tw, tmp.p);
  }
  SAMFAST_PHASE("fused layer-1 image->token + final token->image");
  const float* x = xb.p;
  add_norm(c, qu, tmp.p, Ru, p.nf);
  // the IoU head on token 0 of each prompt and hypernetwork MLP j on mask token j (-> hyper_in [B, K, C2]): 1 + K
  // independent MLPs, spread over the threads while each is too small for its linears to use them
  const int64_t Mp = round_up(d.M, 8), hw_ = std::max(round_up(d.Hid, 8), C);
  float* iou_all = tu;  // [B, Mp]
  AlignedFloats hyper, mlp_tmp;
  hyper.alloc(B * K * d.C2, false);
  mlp_tmp.alloc((1 + K) * 2 * B * hw_, false);
  const bool heads_par = B * C * hw_ < kLinearParallelMacs;  // about their linears' size
#pragma omp parallel for schedule(static) if (heads_par)
  for (int64_t k = -1; k < K; ++k) {
    float* h1 = mlp_tmp.p + (1 + k) * 2 * B * hw_;
    float* h2 = h1 + B * hw_;
    if (k < 0) {
      mlp3(c, p.iou, qu, Tu * C, B, iou_all, Mp, h1, h2);
    } else {
      const int64_t j = a.multimask ? 1 + k : 0;
      mlp3(c, &p.hyper[3 * j], qu + (1 + k) * C, Tu * C, B, hyper.p + k * d.C2, K * d.C2, h1, h2);
    }
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) a.iou[b * K + k] = iou_all[b * Mp + (a.multimask ? 1 + k : 0)];
  SAMFAST_PHASE("IoU head + hypernetworks");
  MaskHeadArgs m;
  m.B = B; m.h = a.h; m.w = a.w; m.C = C; m.C1 = d.C1; m.C2 = d.C2; m.M = K;
  m.src = x; m.w1 = p.up1.w; m.b1 = p.up1.b; m.ln_w = p.up_ln.w; m.ln_b = p.up_ln.b;
  m.w2 = p.up2.w; m.b2 = p.up2.b; m.hyper = hyper.p; m.out = a.masks; m.eps = a.eps2d;
  m.prepacked = p.mask_head;
  MaskHeadFold mf;
  if (fold) {
    mf.K = Kf; mf.ldp = HT; mf.G = a.g; mf.P0 = P0.p; mf.P1 = P1.p; mf.st0 = st0.p; mf.st1 = st1.p;
    mf.Mp = Mfold.p; mf.c0b = c01b.p; mf.c1b = c01b.p + B * n1p;
    mf.k1 = p.fold.k1; mf.k2 = p.fold.k2; mf.cz = p.fold.cz;
    m.fold = &mf;
  }
  mask_head_cpu(m);
  SAMFAST_PHASE("mask head");
}

int64_t cached_decoder_fold_width(const DecoderDims& d) {
  return mask_head_conv1_width(d.C1) + kKvBlocks * d.Di + proj_image_width(d.Di);
}

void cached_decoder_fold_image(const DecoderDims& d, const float* packed, const float* x0, const float* pe, int64_t N,
                               float* g) {
  check_decoder_dims(d);
  const DecoderParams p = bind_params(d, packed);
  const int64_t n1p = p.fold.N1p, C = d.C, Di = d.Di, W = kKvBlocks * Di;
  const Ctx c{pick_isa(), 1, C, d.H, Di, 0.f};
  const Slot &gamma = p.layers[0].n4, &wk = p.layers[1].t2i.k, &wv = p.layers[1].t2i.v;
  float* kv = g + N * n1p;
  constexpr int64_t kRows = 64;
#pragma omp parallel
  {
    AlignedFloats xc;
    xc.alloc(kRows * C, false);
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < N; r0 += kRows) {
      const int64_t rows = std::min(kRows, N - r0);
      std::fill(g + r0 * n1p, g + (r0 + rows) * n1p, 0.f);
      gemm(c.isa, x0 + r0 * C, C, rows, C, p.fold.App, n1p, n1p, g + r0 * n1p, n1p);
      center_rows(x0 + r0 * C, rows, C, xc.p);  // (x0 - row mean) * layer 0's norm4 weight
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = 0; k < C; ++k) xc.p[i * C + k] *= gamma.w[k];
      float* out = kv + r0 * W;
      std::fill(out, out + rows * W, 0.f);
      gemm_wt(c, wk, xc.p, C, rows, 0, C, 0, Di, out, W);                // Kc
      gemm_wt(c, wk, pe + r0 * C, C, rows, 0, C, 0, Di, out + Di, W);    // Kpe
      gemm_wt(c, wv, xc.p, C, rows, 0, C, 0, Di, out + 2 * Di, W);       // Vc
    }
  }
  if (proj_image_applies(N)) proj_pass_image(c, p, x0, pe, N, kv + N * W);  // the projection pass's block
}

}  // namespace samfast::cpu
