// Attention over the paged KV cache.
//
// paged_attention: one query token per work item (decode, and the fallback
// for prefill when the head size does not suit tensor cores). A block
// serves one KV head of one item, so the whole GQA group of query heads
// shares each K/V row it reads; long contexts are split over gridDim.z
// partitions whose partial softmax states paged_attention_reduce merges.
//
// flash_prefill: FlashAttention-2 style causal attention for tiles of up to
// 64 consecutive query tokens of one sequence, with K/V tiles gathered from
// the paged cache (so prefix-cache hits and chunked prefill read earlier
// positions the same way), bf16 tensor-core MMAs and fp32 online softmax.
//
// Layouts: q and out [T, nh, HEAD_DIM] bf16; k_cache/v_cache [slots, nkv,
// HEAD_DIM] bf16 for one layer; block_tables [seqs, table_stride] int.

#define PA_WARPS 4

// Loads this lane's HEAD_EPL elements of a head vector as f32 (0 past the
// end of the head).
__device__ __forceinline__ void load_lane_part(const bf16_t* __restrict__ p, int lane, float* f) {
    const int d0 = lane * HEAD_EPL;
    if constexpr (HEAD_DIM % 128 == 0 && HEAD_EPL == 4) {
        const uint2 w = *reinterpret_cast<const uint2*>(p + d0);
        f[0] = __uint_as_float(w.x << 16);
        f[1] = __uint_as_float(w.x & 0xffff0000u);
        f[2] = __uint_as_float(w.y << 16);
        f[3] = __uint_as_float(w.y & 0xffff0000u);
    } else if constexpr (HEAD_DIM % 64 == 0 && HEAD_EPL == 2) {
        const u32 w = *reinterpret_cast<const u32*>(p + d0);
        f[0] = __uint_as_float(w << 16);
        f[1] = __uint_as_float(w & 0xffff0000u);
    } else {
#pragma unroll
        for (int e = 0; e < HEAD_EPL; ++e) {
            const int d = d0 + e;
            f[e] = d < HEAD_DIM ? bf16_to_f32(p[d]) : 0.0f;
        }
    }
}

// Grid (items, nkv, splits), PA_WARPS warps. Item i is query row q_rows[i]
// of sequence item_seq[i] attending to positions [0, ctx_lens[i]). With one
// split the result goes to `out`; otherwise each split writes its
// unnormalised accumulator and (max, sum) to part_acc / part_ml.
extern "C" __global__ void __launch_bounds__(PA_WARPS * 32) paged_attention(
    bf16_t* __restrict__ out, float* __restrict__ part_acc, float* __restrict__ part_ml,
    const bf16_t* __restrict__ q, const bf16_t* __restrict__ k_cache,
    const bf16_t* __restrict__ v_cache, const int* __restrict__ block_tables,
    int table_stride, const int* __restrict__ q_rows, const int* __restrict__ item_seq,
    const int* __restrict__ ctx_lens, int nh, int nkv, int block_size, int partition,
    float scale) {
    __shared__ float s_ml[PA_WARPS][GQA_GROUP][2];
    __shared__ float s_acc[PA_WARPS][GQA_GROUP][HEAD_DIM];

    const int item = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int splits = gridDim.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = q_rows[item];
    const int ctx = ctx_lens[item];
    const int* table = block_tables + (long long)item_seq[item] * table_stride;
    const int begin = split * partition;
    const int end = min(ctx, begin + partition);

    float qf[GQA_GROUP][HEAD_EPL];
#pragma unroll
    for (int g = 0; g < GQA_GROUP; ++g) {
        load_lane_part(q + ((long long)row * nh + kvh * GQA_GROUP + g) * HEAD_DIM, lane, qf[g]);
#pragma unroll
        for (int e = 0; e < HEAD_EPL; ++e) qf[g][e] *= scale;
    }
    float m[GQA_GROUP], l[GQA_GROUP], acc[GQA_GROUP][HEAD_EPL];
#pragma unroll
    for (int g = 0; g < GQA_GROUP; ++g) {
        m[g] = NEG_BIG;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < HEAD_EPL; ++e) acc[g][e] = 0.0f;
    }

    // Unrolled so that the next token's K/V loads are issued before this
    // token's math: decode attention is bound by memory latency.
#pragma unroll 2
    for (int j = begin + warp; j < end; j += PA_WARPS) {
        const long long slot = (long long)table[j / block_size] * block_size + j % block_size;
        const long long off = (slot * nkv + kvh) * HEAD_DIM;
        float kf[HEAD_EPL], vf[HEAD_EPL];
        load_lane_part(k_cache + off, lane, kf);
        load_lane_part(v_cache + off, lane, vf);
#pragma unroll
        for (int g = 0; g < GQA_GROUP; ++g) {
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < HEAD_EPL; ++e) s += qf[g][e] * kf[e];
            s = warp_sum(s);
            const float m_new = fmaxf(m[g], s);
            const float corr = expf(m[g] - m_new);
            const float p = expf(s - m_new);
            l[g] = l[g] * corr + p;
#pragma unroll
            for (int e = 0; e < HEAD_EPL; ++e) acc[g][e] = acc[g][e] * corr + p * vf[e];
            m[g] = m_new;
        }
    }

    // Merge the warps' states.
#pragma unroll
    for (int g = 0; g < GQA_GROUP; ++g) {
        if (lane == 0) {
            s_ml[warp][g][0] = m[g];
            s_ml[warp][g][1] = l[g];
        }
#pragma unroll
        for (int e = 0; e < HEAD_EPL; ++e) {
            const int d = lane * HEAD_EPL + e;
            if (d < HEAD_DIM) s_acc[warp][g][d] = acc[g][e];
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < GQA_GROUP * HEAD_DIM; idx += blockDim.x) {
        const int g = idx / HEAD_DIM, d = idx % HEAD_DIM;
        float mx = NEG_BIG;
#pragma unroll
        for (int w = 0; w < PA_WARPS; ++w) mx = fmaxf(mx, s_ml[w][g][0]);
        float sum = 0.0f, a = 0.0f;
#pragma unroll
        for (int w = 0; w < PA_WARPS; ++w) {
            const float c = expf(s_ml[w][g][0] - mx);
            sum += s_ml[w][g][1] * c;
            a += s_acc[w][g][d] * c;
        }
        const int h = kvh * GQA_GROUP + g;
        if (splits == 1) {
            out[((long long)row * nh + h) * HEAD_DIM + d] = f32_to_bf16(sum > 0.0f ? a / sum : 0.0f);
        } else {
            const long long base = ((long long)item * nh + h) * splits + split;
            part_acc[base * HEAD_DIM + d] = a;
            if (d == 0) {
                part_ml[base * 2] = mx;
                part_ml[base * 2 + 1] = sum;
            }
        }
    }
}

// Grid (items, nh): merges the splits of paged_attention.
extern "C" __global__ void paged_attention_reduce(bf16_t* __restrict__ out,
                                                  const float* __restrict__ part_acc,
                                                  const float* __restrict__ part_ml,
                                                  const int* __restrict__ q_rows, int nh,
                                                  int splits) {
    const int item = blockIdx.x, h = blockIdx.y;
    const long long base = ((long long)item * nh + h) * splits;
    float mx = NEG_BIG;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, part_ml[(base + s) * 2]);
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += part_ml[(base + s) * 2 + 1] * expf(part_ml[(base + s) * 2] - mx);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    bf16_t* dst = out + ((long long)q_rows[item] * nh + h) * HEAD_DIM;
    for (int d = threadIdx.x; d < HEAD_DIM; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < splits; ++s) a += part_acc[(base + s) * HEAD_DIM + d] * expf(part_ml[(base + s) * 2] - mx);
        dst[d] = f32_to_bf16(a * inv);
    }
}

#if HEAD_DIM % 16 == 0 && HEAD_DIM <= 128
#define FLASH_BM 64
#define FLASH_BN 64
#define KS_STRIDE (HEAD_DIM + 8)
#define VT_STRIDE (FLASH_BN + 8)

// d += a * b for one m16n8k16 bf16 tile, fp32 accumulate.
__device__ __forceinline__ void mma_16816(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Grid (tiles, nh), 4 warps, 16 query rows per warp. tiles[4 i ..] = (row in
// block_tables, first query row in T, query rows in the tile (<= 64),
// position of the first query row). Query row r attends to positions
// 0 ..= pos0 + r. scale_log2 = softmax scale * log2(e).
extern "C" __global__ void __launch_bounds__(128) flash_prefill(
    bf16_t* __restrict__ out, const bf16_t* __restrict__ q, const bf16_t* __restrict__ k_cache,
    const bf16_t* __restrict__ v_cache, const int* __restrict__ block_tables, int table_stride,
    const int* __restrict__ tiles, int nh, int nkv, int block_size, float scale_log2) {
    __shared__ __align__(16) bf16_t ks[FLASH_BN * KS_STRIDE];
    __shared__ __align__(16) bf16_t vt[HEAD_DIM * VT_STRIDE];

    const int h = blockIdx.y, kvh = h / GQA_GROUP;
    const int* tile = tiles + blockIdx.x * 4;
    const int seq = tile[0], row0 = tile[1], nq = tile[2], pos0 = tile[3];
    const int* table = block_tables + (long long)seq * table_stride;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, tq = lane & 3;
    const int r_lo = warp * 16 + g, r_hi = r_lo + 8;

    // Q as A fragments, straight from global memory.
    u32 qf[HEAD_DIM / 16][4];
    const bf16_t* q_lo = q + ((long long)(row0 + r_lo) * nh + h) * HEAD_DIM;
    const bf16_t* q_hi = q + ((long long)(row0 + r_hi) * nh + h) * HEAD_DIM;
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
        const int c = kk * 16 + 2 * tq;
        qf[kk][0] = r_lo < nq ? *reinterpret_cast<const u32*>(q_lo + c) : 0u;
        qf[kk][1] = r_hi < nq ? *reinterpret_cast<const u32*>(q_hi + c) : 0u;
        qf[kk][2] = r_lo < nq ? *reinterpret_cast<const u32*>(q_lo + c + 8) : 0u;
        qf[kk][3] = r_hi < nq ? *reinterpret_cast<const u32*>(q_hi + c + 8) : 0u;
    }

    float o[HEAD_DIM / 8][4];
#pragma unroll
    for (int dt = 0; dt < HEAD_DIM / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m_lo = NEG_BIG, m_hi = NEG_BIG, l_lo = 0.0f, l_hi = 0.0f;

    const int last_pos = pos0 + nq - 1;
    const int num_kt = last_pos / FLASH_BN + 1;
    constexpr int CHUNKS = HEAD_DIM / 8;  // 16-byte chunks per row

    for (int kt = 0; kt < num_kt; ++kt) {
        const int key0 = kt * FLASH_BN;
        for (int c = threadIdx.x; c < FLASH_BN * CHUNKS; c += blockDim.x) {
            const int n = c / CHUNKS, d8 = (c % CHUNKS) * 8;
            const int key = key0 + n;
            uint4 kv = make_uint4(0u, 0u, 0u, 0u), vv = make_uint4(0u, 0u, 0u, 0u);
            if (key <= last_pos) {
                const long long slot = (long long)table[key / block_size] * block_size + key % block_size;
                const long long off = (slot * nkv + kvh) * HEAD_DIM + d8;
                kv = *reinterpret_cast<const uint4*>(k_cache + off);
                vv = *reinterpret_cast<const uint4*>(v_cache + off);
            }
            *reinterpret_cast<uint4*>(ks + n * KS_STRIDE + d8) = kv;
            const bf16_t* vh = reinterpret_cast<const bf16_t*>(&vv);
#pragma unroll
            for (int e = 0; e < 8; ++e) vt[(d8 + e) * VT_STRIDE + n] = vh[e];
        }
        __syncthreads();

        // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
        float s[FLASH_BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < FLASH_BN / 8; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const bf16_t* krow = ks + (nt * 8 + g) * KS_STRIDE + 2 * tq;
#pragma unroll
            for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
                u32 b[2];
                b[0] = *reinterpret_cast<const u32*>(krow + kk * 16);
                b[1] = *reinterpret_cast<const u32*>(krow + kk * 16 + 8);
                mma_16816(s[nt], qf[kk], b);
            }
        }

        // Causal mask, scale, online softmax (rows g and g + 8 of the warp;
        // a row's 64 values are spread over the 4 threads of a quad).
        float mx_lo = m_lo, mx_hi = m_hi;
#pragma unroll
        for (int nt = 0; nt < FLASH_BN / 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int key = key0 + nt * 8 + 2 * tq + e;
                s[nt][e] = key <= pos0 + r_lo ? s[nt][e] * scale_log2 : NEG_BIG;
                s[nt][2 + e] = key <= pos0 + r_hi ? s[nt][2 + e] * scale_log2 : NEG_BIG;
                mx_lo = fmaxf(mx_lo, s[nt][e]);
                mx_hi = fmaxf(mx_hi, s[nt][2 + e]);
            }
        }
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
        const float corr_lo = exp2f(m_lo - mx_lo), corr_hi = exp2f(m_hi - mx_hi);
        m_lo = mx_lo;
        m_hi = mx_hi;
        l_lo *= corr_lo;
        l_hi *= corr_hi;
#pragma unroll
        for (int dt = 0; dt < HEAD_DIM / 8; ++dt) {
            o[dt][0] *= corr_lo;
            o[dt][1] *= corr_lo;
            o[dt][2] *= corr_hi;
            o[dt][3] *= corr_hi;
        }
#pragma unroll
        for (int nt = 0; nt < FLASH_BN / 8; ++nt) {
            s[nt][0] = exp2f(s[nt][0] - m_lo);
            s[nt][1] = exp2f(s[nt][1] - m_lo);
            s[nt][2] = exp2f(s[nt][2] - m_hi);
            s[nt][3] = exp2f(s[nt][3] - m_hi);
            l_lo += s[nt][0] + s[nt][1];
            l_hi += s[nt][2] + s[nt][3];
        }

        // O += P V, P re-packed from the S accumulators as A fragments.
#pragma unroll
        for (int kk = 0; kk < FLASH_BN / 16; ++kk) {
            u32 a[4];
            a[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dt = 0; dt < HEAD_DIM / 8; ++dt) {
                const bf16_t* vrow = vt + (dt * 8 + g) * VT_STRIDE + kk * 16 + 2 * tq;
                u32 b[2];
                b[0] = *reinterpret_cast<const u32*>(vrow);
                b[1] = *reinterpret_cast<const u32*>(vrow + 8);
                mma_16816(o[dt], a, b);
            }
        }
        __syncthreads();
    }

    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
    const float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f;
    const float inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
    bf16_t* out_lo = out + ((long long)(row0 + r_lo) * nh + h) * HEAD_DIM;
    bf16_t* out_hi = out + ((long long)(row0 + r_hi) * nh + h) * HEAD_DIM;
#pragma unroll
    for (int dt = 0; dt < HEAD_DIM / 8; ++dt) {
        const int c = dt * 8 + 2 * tq;
        if (r_lo < nq) *reinterpret_cast<u32*>(out_lo + c) = pack_bf16x2(o[dt][0] * inv_lo, o[dt][1] * inv_lo);
        if (r_hi < nq) *reinterpret_cast<u32*>(out_hi + c) = pack_bf16x2(o[dt][2] * inv_hi, o[dt][3] * inv_hi);
    }
}
#endif
