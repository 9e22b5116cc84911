// Packed-parameter layout of the whole-decoder kernel (see cached_decoder_params.h).
#include "cpu/cached_decoder_params.h"

#include <algorithm>
#include <string>

#include "cpu/mask_head_kernel.h"
#include "cpu/small_gemm.h"
#include "tensor_ref.h"

namespace samfast::cpu {
namespace {

using small_gemm::round_up;

// The one definition of the packed order: calls v(kind, name, out, in, slot) per entry.
template <class V>
void visit_params(const DecoderDims& d, DecoderParams& p, V&& v) {
  using K = ParamEntry::Kind;
  auto attn = [&](const std::string& name, int64_t di, AttnP& a) {
    v(K::Linear, name + ".q_proj", di, d.C, a.q);
    v(K::Linear, name + ".k_proj", di, d.C, a.k);
    v(K::Linear, name + ".v_proj", di, d.C, a.v);
    v(K::Linear, name + ".out_proj", d.C, di, a.o);
  };
  for (int l = 0; l < 2; ++l) {
    LayerP& L = p.layers[l];
    const std::string pre = "transformer.layers." + std::to_string(l) + ".";
    attn(pre + "self_attn", d.C, L.self_attn);
    v(K::Norm, pre + "norm1", d.C, 0, L.n1);
    attn(pre + "cross_attn_token_to_image", d.Di, L.t2i);
    v(K::Norm, pre + "norm2", d.C, 0, L.n2);
    v(K::Linear, pre + "mlp.lin1", d.Mlp, d.C, L.mlp1);
    v(K::Linear, pre + "mlp.lin2", d.C, d.Mlp, L.mlp2);
    v(K::Norm, pre + "norm3", d.C, 0, L.n3);
    attn(pre + "cross_attn_image_to_token", d.Di, L.i2t);
    v(K::Norm, pre + "norm4", d.C, 0, L.n4);
  }
  attn("transformer.final_attn_token_to_image", d.Di, p.final_attn);
  v(K::Norm, "transformer.norm_final_attn", d.C, 0, p.nf);
  v(K::Linear, "iou_prediction_head.layers.0", d.Hid, d.C, p.iou[0]);
  v(K::Linear, "iou_prediction_head.layers.1", d.Hid, d.Hid, p.iou[1]);
  v(K::Linear, "iou_prediction_head.layers.2", d.M, d.Hid, p.iou[2]);
  p.hyper.resize(3 * d.M);
  for (int64_t j = 0; j < d.M; ++j) {
    const std::string pre = "output_hypernetworks_mlps." + std::to_string(j) + ".layers.";
    v(K::Linear, pre + "0", d.C, d.C, p.hyper[3 * j]);
    v(K::Linear, pre + "1", d.C, d.C, p.hyper[3 * j + 1]);
    v(K::Linear, pre + "2", d.C2, d.C, p.hyper[3 * j + 2]);
  }
  v(K::ConvT, "output_upscaling.0", d.C1, d.C, p.up1);
  v(K::Norm, "output_upscaling.1", d.C1, 0, p.up_ln);
  v(K::ConvT, "output_upscaling.3", d.C2, d.C1, p.up2);
}

// Floats of the fold block (DecoderParams::Fold): two [C, N1p] matrices and five [N1p] vectors.
int64_t fold_numel(const DecoderDims& d) { return (2 * d.C + 5) * mask_head_conv1_width(d.C1); }

int64_t entry_numel(ParamEntry::Kind k, int64_t out, int64_t in) {
  switch (k) {
    case ParamEntry::Linear: return in * round_up(out, 8) + out * in + round_up(out, 8);
    case ParamEntry::Norm: return 2 * out;
    default: return 4 * in * out + out;
  }
}

}  // namespace

void check_decoder_dims(const DecoderDims& d) {
  const int64_t all[] = {d.C, d.H, d.Di, d.Mlp, d.M, d.Hid, d.C1, d.C2};
  bool ok = std::all_of(std::begin(all), std::end(all), [](int64_t v) { return v > 0; });
  ok = ok && d.M >= 2 && d.C % d.H == 0 && d.Di % d.H == 0 && d.C % 8 == 0 && (d.Di / d.H) % 8 == 0 &&
       d.C2 % 8 == 0 && d.Hid % 8 == 0 && d.Mlp % 8 == 0;
  if (!ok)
    throw ShapeError("cached decoder: unsupported dims (C=" + std::to_string(d.C) + ", heads=" + std::to_string(d.H) +
                     ", Di=" + std::to_string(d.Di) + ", mlp=" + std::to_string(d.Mlp) + ", mask tokens=" +
                     std::to_string(d.M) + ", iou hidden=" + std::to_string(d.Hid) + ", C1=" + std::to_string(d.C1) +
                     ", C2=" + std::to_string(d.C2) + "): need C, Di / heads, C2, hidden sizes multiples of 8");
}

DecoderParams bind_params(const DecoderDims& d, const float* packed) {
  DecoderParams p;
  int64_t off = 0;
  visit_params(d, p, [&](ParamEntry::Kind k, const std::string&, int64_t out, int64_t in, Slot& s) {
    s.in = in;
    s.out = out;
    s.outp = round_up(out, 8);
    const float* base = packed + off;
    if (k == ParamEntry::Linear) {
      s.wt = base;
      s.w = base + in * s.outp;
      s.b = s.w + out * in;
    } else {
      s.w = base;
      s.b = base + (k == ParamEntry::Norm ? out : 4 * in * out);
    }
    off += entry_numel(k, out, in);
  });
  p.mask_head = packed + round_up(off, 16);  // 64-byte aligned when `packed` is (see mask_head_cpu)
  const int64_t n1p = mask_head_conv1_width(d.C1);
  const float* f = p.mask_head + round_up(mask_head_packed_numel(d.C, d.C1, d.C2), 16);
  p.fold.N1p = n1p;
  p.fold.Ap = f;
  p.fold.App = f + d.C * n1p;
  p.fold.k1 = f + 2 * d.C * n1p;
  p.fold.k2 = p.fold.k1 + n1p;
  p.fold.c0 = p.fold.k2 + n1p;
  p.fold.c1 = p.fold.c0 + n1p;
  p.fold.cz = p.fold.c1 + n1p;
  return p;
}

std::vector<ParamEntry> decoder_param_entries(const DecoderDims& d) {
  check_decoder_dims(d);
  std::vector<ParamEntry> out;
  DecoderParams p;
  visit_params(d, p, [&](ParamEntry::Kind k, const std::string& name, int64_t o, int64_t i, Slot&) {
    out.push_back({k, name, o, i});
  });
  return out;
}

int64_t decoder_packed_numel(const DecoderDims& d) {
  int64_t n = 0;
  for (const auto& e : decoder_param_entries(d)) n += entry_numel(e.kind, e.out, e.in);
  return round_up(n, 16) + round_up(mask_head_packed_numel(d.C, d.C1, d.C2), 16) + fold_numel(d);
}

void pack_decoder_params(const DecoderDims& d, const std::vector<const float*>& weights, float* packed) {
  const auto entries = decoder_param_entries(d);
  if (weights.size() != 2 * entries.size())
    throw ShapeError("pack_decoder_params: expected " + std::to_string(2 * entries.size()) + " tensors, got " +
                     std::to_string(weights.size()));
  float* dst = packed;
  for (size_t e = 0; e < entries.size(); ++e) {
    const ParamEntry& E = entries[e];
    const float* w = weights[2 * e];
    const float* b = weights[2 * e + 1];
    if (E.kind == ParamEntry::Linear) {
      const int64_t outp = round_up(E.out, 8);
      std::fill(dst, dst + E.in * outp, 0.f);
      for (int64_t o = 0; o < E.out; ++o) {  // W^T in column panels (Slot::panel)
        const int64_t p = o / kPanel, j = o % kPanel, width = std::min(kPanel, outp - p * kPanel);
        float* panel = dst + p * kPanel * E.in;
        for (int64_t i = 0; i < E.in; ++i) panel[i * width + j] = w[o * E.in + i];
      }
      std::copy(w, w + E.out * E.in, dst + E.in * outp);
      float* bd = dst + E.in * outp + E.out * E.in;
      std::fill(bd, bd + outp, 0.f);
      std::copy(b, b + E.out, bd);
    } else {
      const int64_t wn = E.kind == ParamEntry::Norm ? E.out : 4 * E.in * E.out;
      std::copy(w, w + wn, dst);
      std::copy(b, b + E.out, dst + wn);
    }
    dst += entry_numel(E.kind, E.out, E.in);
  }
  // the mask head's GEMM panels, so cached_decoder_cpu does not repack them per call
  const DecoderParams p = bind_params(d, packed);
  MaskHeadArgs m;
  m.C = d.C; m.C1 = d.C1; m.C2 = d.C2;
  m.w1 = p.up1.w; m.b1 = p.up1.b; m.ln_w = p.up_ln.w; m.ln_b = p.up_ln.b; m.w2 = p.up2.w; m.b2 = p.up2.b;
  pack_mask_head(m, const_cast<float*>(p.mask_head));
  // the fold block: A (ConvT1 as [C, 4 C1], column s * C1 + co), scaled by the two norm4 weights
  const int64_t C = d.C, C1 = d.C1, n1p = p.fold.N1p;
  const Slot &n40 = p.layers[0].n4, &n41 = p.layers[1].n4;
  const float *ob0 = p.layers[0].i2t.o.b, *ob1 = p.layers[1].i2t.o.b;
  float* Ap = const_cast<float*>(p.fold.Ap);
  float* App = const_cast<float*>(p.fold.App);
  std::vector<double> k1(n1p), k2(n1p), c0(n1p), c1(n1p), cz(n1p);
  for (int64_t k = 0; k < C; ++k)
    for (int64_t n = 0; n < n1p; ++n) {
      const double A = n < 4 * C1 ? p.up1.w[(k * C1 + n % C1) * 4 + n / C1] : 0.0;
      const double ap = n41.w[k] * A, app = n40.w[k] * ap;
      Ap[k * n1p + n] = static_cast<float>(ap);
      App[k * n1p + n] = static_cast<float>(app);
      k1[n] += app;
      k2[n] += ap;
      c0[n] += ob0[k] * app;
      c1[n] += (double(n40.b[k]) + ob1[k]) * ap;
      cz[n] += n41.b[k] * A;
    }
  float* vecs = const_cast<float*>(p.fold.k1);
  for (int64_t n = 0; n < n1p; ++n) {
    vecs[n] = static_cast<float>(k1[n]);
    vecs[n1p + n] = static_cast<float>(k2[n]);
    vecs[2 * n1p + n] = static_cast<float>(c0[n]);
    vecs[3 * n1p + n] = static_cast<float>(c1[n]);
    vecs[4 * n1p + n] = static_cast<float>(cz[n] + (n < 4 * C1 ? p.up1.b[n % C1] : 0.f));
  }
}

}  // namespace samfast::cpu
