# Float64 / float32 check of the projection-pass algebra (csrc/cpu/proj_pass_kernel.h) against the official
# TwoWayTransformer blocks: python proj_pass_algebra.py SEED {64|32}. Experiment (branch proj-pass), not part of main.
# Prototype: pass 2 (layer-1 image->token + final token->image) from per-image projections, vs the official blocks.
import math, torch, sys
import segment_anything as sa
torch.manual_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
DT = torch.float64 if (len(sys.argv) < 3 or sys.argv[2] == "64") else torch.float32
sam = sa.sam_model_registry["vit_b"]()
dec = sam.mask_decoder
with torch.no_grad():
    for p in dec.parameters():
        p.copy_(torch.randn_like(p) * (0.05 if p.dim() > 1 else 0.3) + (1.0 if p.dim() == 1 and False else 0))
    for m in dec.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.copy_(1 + 0.3 * torch.randn_like(m.weight)); m.bias.copy_(0.3 * torch.randn_like(m.bias))
dec = dec.to(DT)
tr = dec.transformer
C, N, T = 256, 4096, 7
x0 = (torch.randn(N, C) * 1.0 + 0.5 * torch.randn(1, C)).to(DT)   # image embedding + no_mask (token-major)
pe = torch.randn(N, C).to(DT)
tok = torch.randn(T, C).to(DT)

def attn_parts(a, q, k, v):
    H = a.num_heads
    qp, kp, vp = a.q_proj(q), a.k_proj(k), a.v_proj(v)
    dh = qp.shape[-1] // H
    qh, kh, vh = (t.view(t.shape[0], H, dh).transpose(0, 1) for t in (qp, kp, vp))
    p = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(dh), -1)  # [H, Lq, Lk]
    o = (p @ vh).transpose(0, 1).reshape(q.shape[0], -1)
    return a.out_proj(o), p

with torch.no_grad():
    # ---- official forward, capturing intermediates
    L0, L1 = tr.layers
    q = L0.self_attn(tok, tok, tok.clone()) if False else None
    queries = L0.self_attn(q=tok[None], k=tok[None], v=tok[None])[0]
    queries = L0.norm1(queries)
    o, _ = attn_parts(L0.cross_attn_token_to_image, queries + tok, x0 + pe, x0)
    queries = L0.norm2(queries + o)
    queries = L0.norm3(queries + L0.mlp(queries))
    o, P0h = attn_parts(L0.cross_attn_image_to_token, x0 + pe, queries + tok, queries)  # P0h [H, N, T]
    y0 = x0 + o
    xb = L0.norm4(y0)
    k_tok0, v_tok0 = queries + tok, queries
    # layer 1
    queries = L1.norm1(queries + L1.self_attn(q=(queries + tok)[None], k=(queries + tok)[None], v=queries[None])[0])
    o, _ = attn_parts(L1.cross_attn_token_to_image, queries + tok, xb + pe, xb)
    queries = L1.norm2(queries + o)
    queries = L1.norm3(queries + L1.mlp(queries))
    o, P1h = attn_parts(L1.cross_attn_image_to_token, xb + pe, queries + tok, queries)
    y1 = xb + o
    x1 = L1.norm4(y1)
    k_tok1, v_tok1 = queries + tok, queries
    fo, Pf = attn_parts(tr.final_attn_token_to_image, queries + tok, x1 + pe, x1)  # final out [T, C]
    ref = dict(P1=P1h, mu1=y1.mean(-1), r1=1 / torch.sqrt(y1.var(-1, unbiased=False) + L1.norm4.eps), fo=fo,
               mu0=y0.mean(-1), r0=1 / torch.sqrt(y0.var(-1, unbiased=False) + L0.norm4.eps))

    # ---- reformulation
    J = lambda v: v - v.mean(-1, keepdim=True)
    H, di = 8, 128; dh = di // H
    a0, a1, af = L0.cross_attn_image_to_token, L1.cross_attn_image_to_token, tr.final_attn_token_to_image
    g0, be0, g1, be1 = L0.norm4.weight, L0.norm4.bias, L1.norm4.weight, L1.norm4.bias
    def rows(a, k_tok, v_tok):  # R [H*T, C] rows (h, t); K [H, T, dh] keys scaled
        K = a.k_proj(k_tok).view(T, H, dh).transpose(0, 1) / math.sqrt(dh)
        V = a.v_proj(v_tok).view(T, H, dh).transpose(0, 1)  # [H, T, dh]
        Wo = a.out_proj.weight.view(C, H, dh)
        R = torch.einsum("htd,chd->htc", V, Wo).reshape(H * T, C)
        return K, V, R
    K0, V0, R0 = rows(a0, k_tok0, v_tok0)
    K1, V1, R1 = rows(a1, k_tok1, v_tok1)
    b0, b1 = a0.out_proj.bias, a1.out_proj.bias
    P0 = P0h.permute(1, 0, 2).reshape(N, H * T)  # [N, (h, t)]
    R0c, R1c, b0c, b1c, be0c = J(R0), J(R1), J(b0), J(b1), J(be0)
    x0c = J(x0)
    # per-image arrays
    G0 = torch.diag(g0); S = G0 @ (torch.eye(C, dtype=DT) - 1.0 / C) @ G0
    Jm = torch.eye(C, dtype=DT) - 1.0 / C
    A1 = (x0c * g0) @ a1.q_proj.weight.T             # W_q1 G0 x0c
    A2 = pe @ a1.q_proj.weight.T                      # W_q1 pe
    A3 = J(x0c @ S) @ a0.out_proj.weight              # W_o0^T J S x0c   [N, di]
    A4 = J(x0c * g0) @ a1.out_proj.weight             # W_o1^T J G0 x0c
    A5 = (J(x0c * g0) * g1) @ af.k_proj.weight.T      # W_kf G1 J G0 x0c
    A6 = pe @ af.k_proj.weight.T
    A7 = (J(x0c * g0) * g1) @ af.v_proj.weight.T      # W_vf G1 J G0 x0c
    A8 = x0c @ a0.out_proj.weight                     # W_o0^T x0c (J x0c = x0c)
    e1 = x0c @ g0; e2 = ((x0c @ S) * x0c).sum(-1); w = g0 * J(be0 + b1); e4 = x0c @ w; e5 = (x0c * x0c).sum(-1)
    e6 = x0c @ b0c; e3 = x0c @ (S @ b0c)
    bd = lambda A, K: torch.einsum("nhd,htd->nht", A.view(N, H, dh), K).reshape(N, H * T)  # block diagonal
    # ---- pass 1 stats: |y0c|^2 from A8
    q00 = e5 + 2 * bd(A8, V0).sum(-1) * 0 + 0  # placeholder replaced below
    RV0 = bd(A8, V0)  # [N, HT]: R0[j] . x0c
    y0sq = e5 + 2 * (P0 * RV0).sum(-1) + 2 * e6 + ((P0 @ (R0c @ R0c.T)) * P0).sum(-1) + 2 * P0 @ (R0c @ b0c) + b0c @ b0c
    mu0 = x0.mean(-1) + P0 @ R0.mean(-1) + b0.mean()
    r0 = 1 / torch.sqrt(y0sq / C + L0.norm4.eps)
    # ---- s1
    Wq1 = a1.q_proj.weight.view(H, dh, C)
    M1 = torch.einsum("jc,hdc,htd->jht", R0c * g0, Wq1, K1).reshape(H * T, H * T)
    c1 = torch.einsum("c,hdc,htd->ht", b0c * g0, Wq1, K1).reshape(-1)
    c2 = torch.einsum("hd,htd->ht", (a1.q_proj.weight @ be0 + a1.q_proj.bias).view(H, dh), K1).reshape(-1)
    s1 = r0[:, None] * (bd(A1, K1) + P0 @ M1 + c1) + bd(A2, K1) + c2
    P1 = torch.softmax(s1.view(N, H, T), -1).reshape(N, H * T)
    # ---- LN1 stats
    mean_g0y0 = (e1 + P0 @ (R0c @ g0) + b0c @ g0) / C
    mu1 = r0 * mean_g0y0 + be0.mean() + P1 @ R1.mean(-1) + b1.mean()
    Q00 = e2 + 2 * (P0 * bd(A3, V0)).sum(-1) + 2 * e3 + ((P0 @ (R0c @ S @ R0c.T)) * P0).sum(-1) \
        + 2 * P0 @ (R0c @ S @ b0c) + b0c @ S @ b0c
    Q0c = e4 + P0 @ (R0c @ w) + b0c @ w
    Q01 = (P1 * bd(A4, V1)).sum(-1) + ((P0 @ (R0c @ G0 @ R1c.T)) * P1).sum(-1) + P1 @ (R1c @ (g0 * b0c))
    v = be0c + b1c
    Q11 = ((P1 @ (R1c @ R1c.T)) * P1).sum(-1); Q1c = P1 @ (R1c @ v); Qcc = v @ v
    y1sq = r0 ** 2 * Q00 + 2 * r0 * (Q0c + Q01) + Qcc + 2 * Q1c + Q11
    r1 = 1 / torch.sqrt(y1sq / C + L1.norm4.eps)
    # ---- final attention (all T tokens here)
    qf = af.q_proj(queries + tok).view(T, H, dh).transpose(0, 1) / math.sqrt(dh)  # [H, T, dh]
    Wkf = af.k_proj.weight.view(H, dh, C); Wvf = af.v_proj.weight.view(H, dh, C)
    gJg = lambda Rr: J(Rr * g0) * g1       # rows -> G1 J G0 rows
    F0 = torch.einsum("jc,hdc,htd->jht", gJg(R0c), Wkf, qf).reshape(H * T, H * T)
    f0 = torch.einsum("c,hdc,htd->ht", gJg(b0c), Wkf, qf).reshape(-1)
    F1 = torch.einsum("jc,hdc,htd->jht", R1c * g1, Wkf, qf).reshape(H * T, H * T)
    f1 = torch.einsum("c,hdc,htd->ht", v * g1, Wkf, qf).reshape(-1)
    f2 = torch.einsum("hd,htd->ht", (af.k_proj.weight @ be1 + af.k_proj.bias).view(H, dh), qf).reshape(-1)
    sf = r1[:, None] * (r0[:, None] * (bd(A5, qf) + P0 @ F0 + f0) + P1 @ F1 + f1) + bd(A6, qf) + f2  # [N, (h,t)]
    a = torch.softmax(sf, 0)  # over pixels
    w_rr, w_r = a * (r1 * r0)[:, None], a * r1[:, None]
    VA7 = torch.einsum("nj,nhd->jhd", w_rr, A7.view(N, H, dh))  # [(h,t), H, dh] -> take own head
    VA7 = VA7.view(H, T, H, dh)[torch.arange(H), :, torch.arange(H)]  # [H, T, dh]
    VP0, VP1 = w_rr.T @ P0, w_r.T @ P1  # [(h,t), HT]
    Srr, Sr = w_rr.sum(0), w_r.sum(0)
    G0m = torch.einsum("hdc,jc->hdj", Wvf, gJg(R0c)); G1m = torch.einsum("hdc,jc->hdj", Wvf, R1c * g1)
    g0v = torch.einsum("hdc,c->hd", Wvf, gJg(b0c)); g1v = torch.einsum("hdc,c->hd", Wvf, v * g1)
    VP0 = VP0.view(H, T, -1); VP1 = VP1.view(H, T, -1)
    out = VA7 + torch.einsum("hdj,htj->htd", G0m, VP0) + g0v[:, None] * Srr.view(H, T, 1) \
        + torch.einsum("hdj,htj->htd", G1m, VP1) + g1v[:, None] * Sr.view(H, T, 1)
    out = out + (af.v_proj.weight @ be1 + af.v_proj.bias).view(H, 1, dh)
    fo2 = af.out_proj(out.transpose(0, 1).reshape(T, di))
    err = lambda a_, b_: ((a_ - b_).abs().max() / b_.abs().max()).item()
    print(DT, "r0", err(r0, ref["r0"]), "mu0", err(mu0, ref["mu0"]), "P1", err(P1, ref["P1"].permute(1, 0, 2).reshape(N, -1)),
          "mu1", err(mu1, ref["mu1"]), "r1", err(r1, ref["r1"]), "final out", err(fo2, ref["fo"]))
