// Rel-pos multi-head attention (SAM ViT blocks), flash-attention-2 style; contract in
// python/samfast/ops.py: rel_pos_attention_reference.
//
// A CTA owns BQ queries of one (batch, window, head). It first computes the per-query rel-pos bias
// vectors bias_h[q][ky] = q . rel_h[qy, ky] and bias_w[q][kx] = q . rel_w[qx, kx] (q unscaled, fp32
// accumulation; on the tensor cores in the mma kernel) into shared memory, then streams K/V tiles of BK keys with an online softmax (fp32 max / sum /
// accumulators). Windowed blocks read tokens straight from qkv; a key of the padding (outside H x W)
// takes its k / v from qkv_bias[C:2C] / qkv_bias[2C:3C]; padded queries are computed but not stored.
//   * attn_mma_kernel:  fp16 / bf16, hd in {64, 80}, sm_80+: mma.sync m16n8k16 for S = Q K^T and O = P V,
//                       K/V double-buffered through cp.async, V B-fragments through ldmatrix.trans.
//   * attn_simt_kernel: any dtype, hd <= 128: plain fp32 FMA, one warp per 4 queries, lane = key.
#include <cmath>
#include <string>
#include <type_traits>

#include "rel_pos_attention_common.cuh"
#include "rel_pos_attention_simt.cuh"

namespace samfast::cuda {
namespace {

// ------------------------------------------------------------------------------------------------
// Tensor-core path: 4 warps x 16 queries = 64 queries per CTA, key tiles of 64, HD in {64, 80}.
// ------------------------------------------------------------------------------------------------
constexpr int kMmaThreads = 128, kMmaBQ = 64, kMmaBK = 64;

template <int HD> constexpr int mma_ld() { return HD + 8; }  // smem row stride (halves): conflict-free

template <int HD> size_t mma_smem_bytes(int SS) {
  return 2 * static_cast<size_t>(kMmaBQ + 4 * kMmaBK) * mma_ld<HD>() + sizeof(float) * kMmaBQ * SS;
}

}  // namespace

// sm_80+ PTX helpers. Outside the anonymous namespace (external linkage, inline) so that passes for
// older archs, where the mma kernel body is compiled out, do not warn that they are unreferenced.
namespace attn_sm80 {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ uint32_t ld32(const void* p) { return *static_cast<const uint32_t*>(p); }

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, __half) {
  asm(  // pure register op: no volatile, the compiler may schedule it
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                         __nv_bfloat16) {
  asm(  // pure register op: no volatile, the compiler may schedule it
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, __half) {
  __half2 h = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, __nv_bfloat16) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

}  // namespace attn_sm80

namespace {
using namespace attn_sm80;

// K and V rows of keys [k0, k0 + BK) into Kb / Vb ([BK][LD]); keys >= N are zero-filled.
// Two threads per row (token address computed once per thread), alternating 16-byte chunks.
static_assert(kMmaThreads == 2 * kMmaBK, "load_kv_tile maps two threads to each key row");
template <typename T, int HD>
__device__ __forceinline__ void load_kv_tile(const AttnParams& p, int z, int64_t hoff, int k0, T* Kb, T* Vb,
                                             int tid) {
  constexpr int CH = HD / 8, LD = mma_ld<HD>();
  const int r = tid >> 1, key = k0 + r;
  T* kd = Kb + r * LD;
  T* vd = Vb + r * LD;
  if (key < p.N) {
    bool valid;
    const int64_t tok = token_index(p, z, key, valid);
    const int64_t C = p.C;
    const T* ks = (valid ? static_cast<const T*>(p.qkv) + tok * 3 * C : static_cast<const T*>(p.bias)) + C + hoff;
#pragma unroll
    for (int c = tid & 1; c < CH; c += 2) {
      cp_async16(kd + c * 8, ks + c * 8);
      cp_async16(vd + c * 8, ks + C + c * 8);  // v sits C after k, in qkv rows and in qkv_bias alike
    }
  } else {
#pragma unroll
    for (int c = tid & 1; c < CH; c += 2) {
      *reinterpret_cast<uint4*>(kd + c * 8) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(vd + c * 8) = make_uint4(0, 0, 0, 0);
    }
  }
}

// Rel-pos bias of one warp's 16 query rows against ONE table slice on the tensor cores:
// acc[row][c] = q[row] . table[c] for c < S (table: [S][HD], a rel_h[qy] or rel_w[qx] slice), stored to
// Bs[row][off + c] only for the rows whose coordinate matches the slice (match[hh] for rows g, g + 8).
template <typename T, int HD>
__device__ __forceinline__ void bias_pass(const T* table, int S, int off, const bool (&match)[2],
                                          const uint32_t (&qf)[HD / 16][4], float* bs_rows, int SS, int g, int t4) {
  constexpr int KSTEPS = HD / 16;
  for (int nt = 0; nt * 8 < S; ++nt) {  // warp-uniform
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    const int kc = nt * 8 + g;  // this lane's B column (table row)
    const T* tr = table + static_cast<int64_t>(kc < S ? kc : 0) * HD + 2 * t4;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
      const uint32_t b0 = kc < S ? ld32(tr + ks * 16) : 0u;
      const uint32_t b1 = kc < S ? ld32(tr + ks * 16 + 8) : 0u;
      mma16816(acc, qf[ks], b0, b1, T{});
    }
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = nt * 8 + 2 * t4 + e;
        if (match[hh] && c < S) bs_rows[(g + 8 * hh) * SS + off + c] = acc[2 * hh + e];
      }
    }
  }
}

template <typename T, int HD>
__global__ void __launch_bounds__(kMmaThreads, 3) attn_mma_kernel(AttnParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int LD = mma_ld<HD>(), KSTEPS = HD / 16, NTO = HD / 8, NTS = kMmaBK / 8, CH = HD / 8;
  static_assert(HD % 16 == 0 && NTO % 2 == 0, "HD must be a multiple of 16");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [BQ][LD]
  T* Ks = Qs + kMmaBQ * LD;                // [2][BK][LD]
  T* Vs = Ks + 2 * kMmaBK * LD;            // [2][BK][LD]
  float* Bs = reinterpret_cast<float*>(Vs + 2 * kMmaBK * LD);  // [BQ][Sh + Sw]
  const int SS = p.Sh + p.Sw;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int q0 = blockIdx.x * kMmaBQ, head = blockIdx.y, z = blockIdx.z;
  const int64_t hoff = static_cast<int64_t>(head) * HD, C3 = 3 * static_cast<int64_t>(p.C);
  const T* qkv = static_cast<const T*>(p.qkv);
  const T* bias = static_cast<const T*>(p.bias);

  // Q tile (queries >= N: zeros; padded queries: qkv_bias[:C], finite, never stored).
  static_assert(kMmaThreads == 2 * kMmaBQ, "the Q load maps two threads to each query row");
  {
    const int r = tid >> 1, q = q0 + r;
    const T* src = nullptr;
    if (q < p.N) {
      bool valid;
      const int64_t tok = token_index(p, z, q, valid);
      src = (valid ? qkv + tok * C3 : bias) + hoff;
    }
    for (int c = tid & 1; c < CH; c += 2)
      *reinterpret_cast<uint4*>(Qs + r * LD + c * 8) =
          src ? *reinterpret_cast<const uint4*>(src + c * 8) : make_uint4(0, 0, 0, 0);
  }
  __syncthreads();

  // A fragments of this warp's 16 queries: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..).
  uint32_t qf[KSTEPS][4];
  const T* qw = Qs + warp * 16 * LD;
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    qf[ks][0] = ld32(qw + g * LD + ks * 16 + 2 * t4);
    qf[ks][1] = ld32(qw + (g + 8) * LD + ks * 16 + 2 * t4);
    qf[ks][2] = ld32(qw + g * LD + ks * 16 + 2 * t4 + 8);
    qf[ks][3] = ld32(qw + (g + 8) * LD + ks * 16 + 2 * t4 + 8);
  }

  // Rel-pos bias of this warp's rows (only this warp writes and reads them): zero-fill (rows >= N stay 0),
  // then one tensor-core pass per distinct qy (rel_h[qy]) and per distinct qx (rel_w[qx]) among its queries.
  {
    float* bs_rows = Bs + warp * 16 * SS;
    for (int i = lane; i < 16 * SS; i += 32) bs_rows[i] = 0.f;
    __syncwarp();
    const int qa = q0 + warp * 16;
    if (qa < p.N) {  // warp-uniform
      const int nq = min(16, p.N - qa);
      int qy[2], qx[2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int q = qa + g + 8 * hh;
        qy[hh] = q < p.N ? q / p.Sw : -1;  // -1: matches no slice
        qx[hh] = q < p.N ? q - (q / p.Sw) * p.Sw : -1;
      }
      const T* rh = static_cast<const T*>(p.rel_h);
      const T* rw = static_cast<const T*>(p.rel_w);
      for (int y = qa / p.Sw; y <= (qa + nq - 1) / p.Sw; ++y) {
        const bool match[2] = {qy[0] == y, qy[1] == y};
        bias_pass<T, HD>(rh + static_cast<int64_t>(y) * p.Sh * HD, p.Sh, 0, match, qf, bs_rows, SS, g, t4);
      }
      const int nx = min(nq, p.Sw);  // consecutive queries have consecutive qx (mod Sw): nx distinct values
      for (int i = 0; i < nx; ++i) {
        const int x = (qa + i) % p.Sw;
        const bool match[2] = {qx[0] == x, qx[1] == x};
        bias_pass<T, HD>(rw + static_cast<int64_t>(x) * p.Sw * HD, p.Sw, p.Sh, match, qf, bs_rows, SS, g, t4);
      }
    }
    __syncwarp();
  }

  float o[NTO][4];
#pragma unroll
  for (int nt = 0; nt < NTO; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = p.scale * kLog2e;
  const float* brow[2] = {Bs + (warp * 16 + g) * SS, Bs + (warp * 16 + g + 8) * SS};
  // ldmatrix.x4.trans row address: matrices (keys +0..7 | +8..15) x (dims nt*8 | nt*8+8).
  const int ldm_row = lane & 15, ldm_col = (lane >> 4) * 8;

  const int nkt = (p.N + kMmaBK - 1) / kMmaBK;
  load_kv_tile<T, HD>(p, z, hoff, 0, Ks, Vs, tid);
  cp_async_commit();
  for (int kt = 0; kt < nkt; ++kt) {
    if (kt + 1 < nkt) {  // prefetch the next tile into the other buffer (freed by the barrier ending kt-1)
      load_kv_tile<T, HD>(p, z, hoff, (kt + 1) * kMmaBK, Ks + ((kt + 1) & 1) * kMmaBK * LD,
                          Vs + ((kt + 1) & 1) * kMmaBK * LD, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile kt (cp.async + zero stores of all threads) and Bs visible
    const T* Kb = Ks + (kt & 1) * kMmaBK * LD;
    const T* Vb = Vs + (kt & 1) * kMmaBK * LD;
    const int k0 = kt * kMmaBK;

    // S = Q K^T: B fragment b0 = K[key n*8+g][d ks*16+2t..], b1 = K[..][.. + 8].
    float s[NTS][4];
#pragma unroll
    for (int nt = 0; nt < NTS; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const T* kr = Kb + (nt * 8 + g) * LD + 2 * t4;
#pragma unroll
      for (int ks = 0; ks < KSTEPS; ++ks) mma16816(s[nt], qf[ks], ld32(kr + ks * 16), ld32(kr + ks * 16 + 8), T{});
    }

    // Scale + rel-pos bias + mask, in log2 units. Element s[nt][2*hh + e]: row g + 8*hh,
    // key k0 + nt*8 + 2*t4 + e; (ky, kx) advance incrementally (no division per element).
    int key = k0 + 2 * t4;
    int ky = key / p.Sw, kx = key - ky * p.Sw;
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NTS; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kk = key + e;
        int yy = ky, xx = kx + e;
        if (xx >= p.Sw) { xx -= p.Sw; ++yy; }  // e <= 1 < Sw + 1: at most one wrap
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          float v = -INFINITY;
          if (kk < p.N) v = fmaf(s[nt][2 * hh + e], sl2, (brow[hh][yy] + brow[hh][p.Sh + xx]) * kLog2e);
          s[nt][2 * hh + e] = v;
          mt[hh] = fmaxf(mt[hh], v);
        }
      }
      key += 8;
      kx += 8;
      while (kx >= p.Sw) { kx -= p.Sw; ++ky; }
    }

    // Online softmax: the 4 lanes of a quad share rows g and g + 8.
    uint32_t pa[NTS / 2][4];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      mt[hh] = fmaxf(mt[hh], __shfl_xor_sync(0xffffffffu, mt[hh], 1));
      mt[hh] = fmaxf(mt[hh], __shfl_xor_sync(0xffffffffu, mt[hh], 2));
      const float mn = fmaxf(m[hh], mt[hh]);  // finite: key k0 < N is valid for every row
      const float corr = exp2f(m[hh] - mn);
      m[hh] = mn;
      float rs = 0.f;
#pragma unroll
      for (int nt = 0; nt < NTS; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = exp2f(s[nt][2 * hh + e] - mn);
          s[nt][2 * hh + e] = pv;
          rs += pv;
        }
      }
      l[hh] = l[hh] * corr + rs;  // per-lane partial sum; reduced over the quad at the end
#pragma unroll
      for (int nt = 0; nt < NTO; ++nt) {
        o[nt][2 * hh] *= corr;
        o[nt][2 * hh + 1] *= corr;
      }
    }
    // P as A fragments (C layout of two adjacent n-tiles == A layout of one k-step of 16 keys).
#pragma unroll
    for (int kk = 0; kk < NTS / 2; ++kk) {
      pa[kk][0] = pack2(s[2 * kk][0], s[2 * kk][1], T{});
      pa[kk][1] = pack2(s[2 * kk][2], s[2 * kk][3], T{});
      pa[kk][2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1], T{});
      pa[kk][3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3], T{});
    }
    // O += P V: V B-fragments by ldmatrix.x4.trans (r0, r1: n-tile nt; r2, r3: n-tile nt + 1).
#pragma unroll
    for (int kk = 0; kk < NTS / 2; ++kk) {
#pragma unroll
      for (int nt = 0; nt < NTO; nt += 2) {
        uint32_t r0, r1, r2, r3;
        const uint32_t addr = smem_u32(Vb + (kk * 16 + ldm_row) * LD + nt * 8 + ldm_col);
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                     : "r"(addr)
                     : "memory");  // reads smem filled by cp.async: keep it after the barrier
        mma16816(o[nt], pa[kk], r0, r1, T{});
        mma16816(o[nt + 1], pa[kk], r2, r3, T{});
      }
    }
    __syncthreads();  // all warps done with buffer kt & 1 before iteration kt + 1 prefetches into it
  }

  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float lt = l[hh];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const int q = q0 + warp * 16 + g + 8 * hh;
    if (q >= p.N) continue;
    bool valid;
    const int64_t tok = token_index(p, z, q, valid);
    if (!valid) continue;
    const float inv = 1.f / lt;
    T* orow = out + tok * p.C + hoff + 2 * t4;
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt)
      *reinterpret_cast<uint32_t*>(orow + nt * 8) = pack2(o[nt][2 * hh] * inv, o[nt][2 * hh + 1] * inv, T{});
  }
#else
  __trap();  // never launched: the host picks this kernel only on sm_80+
#endif
}

int device_cc_major() {
  int dev = 0, major = 0;
  check_call(cudaGetDevice(&dev), "rel_pos_attention");
  check_call(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "rel_pos_attention");
  return major;
}

size_t max_smem_optin() {
  int dev = 0, v = 0;
  check_call(cudaGetDevice(&dev), "rel_pos_attention");
  check_call(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "rel_pos_attention");
  return static_cast<size_t>(v);
}

bool use_mma(int hd, int SS, Dt dt, const void* qkv, const void* bias, const void* rel_h, const void* rel_w,
             const void* out) {
  if (dt == Dt::F32 || (hd != 64 && hd != 80)) return false;
  if (!aligned16(qkv) || !aligned16(bias) || !aligned16(rel_h) || !aligned16(rel_w) || !aligned16(out)) return false;
  if (device_cc_major() < 8) return false;
  const size_t need = hd == 64 ? mma_smem_bytes<64>(SS) : mma_smem_bytes<80>(SS);
  return need <= max_smem_optin();
}

}  // namespace

const char* rel_pos_attention_path(int64_t H, int64_t W, int64_t C, int num_heads, int window_size, Dt dt,
                                   const void* qkv, const void* qkv_bias, const void* rel_h, const void* rel_w,
                                   const void* out) {
  const int hd = static_cast<int>(C / num_heads);
  const int64_t SS = window_size > 0 ? 2 * window_size : H + W;
  return use_mma(hd, static_cast<int>(SS), dt, qkv, qkv_bias, rel_h, rel_w, out) ? "mma" : "simt";
}

void rel_pos_attention(const void* qkv, const void* qkv_bias, const void* rel_h, const void* rel_w, void* out,
                       int64_t B, int64_t H, int64_t W, int64_t C, int num_heads, int window_size, Dt dt,
                       void* stream) {
  if (B == 0 || H == 0 || W == 0 || C == 0) return;
  AttnParams p{};
  p.qkv = qkv; p.bias = qkv_bias; p.rel_h = rel_h; p.rel_w = rel_w; p.out = out;
  p.H = static_cast<int>(H); p.W = static_cast<int>(W); p.C = static_cast<int>(C);
  p.hd = static_cast<int>(C / num_heads);
  int64_t nWh = 1, nWw = 1;
  if (window_size > 0) {
    p.Sh = p.Sw = window_size;
    nWh = (H + window_size - 1) / window_size;
    nWw = (W + window_size - 1) / window_size;
  } else {
    p.Sh = p.H;
    p.Sw = p.W;
  }
  const int64_t N = static_cast<int64_t>(p.Sh) * p.Sw, Bn = B * nWh * nWw;
  if (N > (1 << 30) || Bn > 65535 || num_heads > 65535 || B * H * W * 3 * C > (int64_t(1) << 62))
    throw std::runtime_error("samfast CUDA rel_pos_attention: problem too large for one launch");
  p.N = static_cast<int>(N);
  p.nWw = static_cast<int>(nWw);
  p.nW = static_cast<int>(nWh * nWw);
  p.scale = 1.0f / std::sqrt(static_cast<float>(p.hd));
  const int SS = p.Sh + p.Sw;
  cudaStream_t st = static_cast<cudaStream_t>(stream);

  if (use_mma(p.hd, SS, dt, qkv, qkv_bias, rel_h, rel_w, out)) {
    const dim3 grid(ceil_div_u(N, kMmaBQ), static_cast<unsigned>(num_heads), static_cast<unsigned>(Bn));
    auto launch = [&](auto tag, auto hd_tag) {
      using T = decltype(tag);
      constexpr int HD = decltype(hd_tag)::value;
      const size_t smem = mma_smem_bytes<HD>(SS);
      set_smem(attn_mma_kernel<T, HD>, smem, "rel_pos_attention");
      attn_mma_kernel<T, HD><<<grid, kMmaThreads, smem, st>>>(p);
    };
    using I64 = std::integral_constant<int, 64>;
    using I80 = std::integral_constant<int, 80>;
    if (dt == Dt::F16) { if (p.hd == 64) launch(__half{}, I64{}); else launch(__half{}, I80{}); }
    else { if (p.hd == 64) launch(__nv_bfloat16{}, I64{}); else launch(__nv_bfloat16{}, I80{}); }
    check_launch("rel_pos_attention (mma)");
    return;
  }
  if (p.hd > 128)
    throw std::runtime_error("samfast CUDA rel_pos_attention: head_dim " + std::to_string(p.hd) +
                             " > 128 is not supported");
  const dim3 grid(ceil_div_u(N, kSimtBQ), static_cast<unsigned>(num_heads), static_cast<unsigned>(Bn));
  const size_t smem = simt_smem_bytes(p.hd, SS);
  dispatch_dt(dt, [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto kernel) {
      set_smem(kernel, smem, "rel_pos_attention");
      kernel<<<grid, kSimtThreads, smem, st>>>(p);
    };
    if (p.hd <= 32) run(attn_simt_kernel<T, 1>);
    else if (p.hd <= 64) run(attn_simt_kernel<T, 2>);
    else if (p.hd <= 96) run(attn_simt_kernel<T, 3>);
    else run(attn_simt_kernel<T, 4>);
  });
  check_launch("rel_pos_attention (simt)");
}

}  // namespace samfast::cuda
