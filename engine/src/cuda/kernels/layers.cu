// Per-token kernels of the transformer layer: embedding gather, RMSNorm,
// q/k norm + RoPE fused with the paged KV-cache write, and SwiGLU.

// x[t, :] = embed[ids[t], :] (bf16 table, f32 residual stream).
extern "C" __global__ void embed_gather(float* __restrict__ x,
                                        const bf16_t* __restrict__ table,
                                        const int* __restrict__ ids, int hidden) {
    const int t = blockIdx.x;
    const bf16_t* row = table + (long long)ids[t] * hidden;
    float* out = x + (long long)t * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = bf16_to_f32(row[i]);
}

// out[r, :] = bf16(w * x[src, :] / rms(x[src, :])) with src = rows[r], or r
// when `rows` is null (the final norm reads only the rows whose logits are
// wanted). The residual add happens in the preceding GEMM's epilogue
// (beta = 1 into x), so x is read once here.
extern "C" __global__ void rms_norm_bf16(bf16_t* __restrict__ out,
                                         const float* __restrict__ x,
                                         const float* __restrict__ w,
                                         const int* __restrict__ rows, int hidden,
                                         float eps) {
    __shared__ float scratch[33];
    const int r = blockIdx.x;
    const long long src = rows ? rows[r] : r;
    const float* xr = x + src * hidden;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)hidden + eps);
    bf16_t* o = out + (long long)r * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = f32_to_bf16(w[i] * (xr[i] * scale));
}

// One block per token, one warp per head (q heads, then k heads, then v
// heads). Adds the qkv bias, applies Qwen3's per-head RMSNorm to q and k,
// rotates q and k (RoPE, neox or interleaved pairs, inverse frequencies
// precomputed on the host with any Llama 3.1 scaling), writes q as bf16 for
// attention and k/v into the paged cache at the token's slot.
//
// qkv: [T, (nh + 2 nkv) * HEAD_DIM] f32; q_out: [T, nh, HEAD_DIM] bf16;
// k_cache/v_cache: [slots, nkv, HEAD_DIM] bf16 (this layer's).
extern "C" __global__ void qkv_rope_kv_write(
    const float* __restrict__ qkv, const float* __restrict__ bias,
    const float* __restrict__ q_norm, const float* __restrict__ k_norm,
    const float* __restrict__ inv_freq, const int* __restrict__ positions,
    const int* __restrict__ slots, bf16_t* __restrict__ q_out,
    bf16_t* __restrict__ k_cache, bf16_t* __restrict__ v_cache, int nh, int nkv,
    float eps, int interleaved) {
    extern __shared__ float head_buf[];  // [warps][HEAD_DIM]
    const int t = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int width = (nh + 2 * nkv) * HEAD_DIM;
    const float pos = (float)positions[t];
    const long long slot = slots[t];
    float* buf = head_buf + warp * HEAD_DIM;
    constexpr int HALF = HEAD_DIM / 2;

    for (int head = warp; head < nh + 2 * nkv; head += warps) {
        const int col = head * HEAD_DIM;
        const float* src = qkv + (long long)t * width + col;
        for (int d = lane; d < HEAD_DIM; d += 32) buf[d] = src[d] + (bias ? bias[col + d] : 0.0f);
        __syncwarp();
        if (head >= nh + nkv) {
            // V: straight into the cache.
            bf16_t* dst = v_cache + slot * nkv * HEAD_DIM + (long long)(head - nh - nkv) * HEAD_DIM;
            for (int d = lane; d < HEAD_DIM; d += 32) dst[d] = f32_to_bf16(buf[d]);
            __syncwarp();
            continue;
        }
        const bool is_q = head < nh;
        const float* norm = is_q ? q_norm : k_norm;
        if (norm) {
            float ss = 0.0f;
            for (int d = lane; d < HEAD_DIM; d += 32) ss += buf[d] * buf[d];
            ss = warp_sum(ss);
            const float scale = 1.0f / sqrtf(ss / (float)HEAD_DIM + eps);
            __syncwarp();
            for (int d = lane; d < HEAD_DIM; d += 32) buf[d] = norm[d] * (buf[d] * scale);
            __syncwarp();
        }
        bf16_t* dst = is_q ? q_out + ((long long)t * nh + head) * HEAD_DIM
                           : k_cache + slot * nkv * HEAD_DIM + (long long)(head - nh) * HEAD_DIM;
        for (int i = lane; i < HALF; i += 32) {
            float s, c;
            sincosf(pos * inv_freq[i], &s, &c);
            const int ia = interleaved ? 2 * i : i;
            const int ib = interleaved ? 2 * i + 1 : i + HALF;
            const float a = buf[ia], b = buf[ib];
            dst[ia] = f32_to_bf16(a * c - b * s);
            dst[ib] = f32_to_bf16(b * c + a * s);
        }
        __syncwarp();
    }
}

// act[t, i] = silu(gate) * up with gate_up[t] = [gate (inter) | up (inter)].
extern "C" __global__ void swiglu_bf16(bf16_t* __restrict__ act,
                                       const float* __restrict__ gate_up, int inter,
                                       long long total) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const long long t = idx / inter;
        const int i = (int)(idx - t * inter);
        const float g = gate_up[t * 2 * inter + i];
        const float u = gate_up[t * 2 * inter + inter + i];
        act[idx] = f32_to_bf16(g / (1.0f + expf(-g)) * u);
    }
}
