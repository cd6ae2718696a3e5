// Per-row reductions over logits, so only a few bytes per row leave the GPU:
// log-softmax gathered at target tokens (prompt scoring) and token
// selection (greedy, temperature, top-k, top-p) for generation. One block of
// 1024 threads per row.

#define ROW_THREADS 1024

// Largest value and its index, the lowest index on ties (PyTorch's argmax);
// NaN never wins. Every thread gets the result.
__device__ __forceinline__ void block_argmax(const float* __restrict__ row, int vocab, float* s_v,
                                             int* s_i, float* out_v, int* out_i) {
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = row[i];
        if (v > best) {
            best = v;
            bi = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) {
            best = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        s_v[warp] = best;
        s_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        best = lane < warps ? s_v[lane] : -INFINITY;
        bi = lane < warps ? s_i[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > best || (ov == best && oi < bi)) {
                best = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            s_v[32] = best;
            s_i[32] = bi;
        }
    }
    __syncthreads();
    *out_v = s_v[32];
    *out_i = s_i[32] == 0x7fffffff ? 0 : s_i[32];
}

// out_lp[r] = log_softmax(logits[r])[targets[r]] (double, summed in double
// as the CPU path does); out_greedy[r] = 1 when targets[r] is the argmax.
extern "C" __global__ void __launch_bounds__(ROW_THREADS) logprob_gather(
    double* __restrict__ out_lp, int* __restrict__ out_greedy, const float* __restrict__ logits,
    const int* __restrict__ targets, int vocab) {
    __shared__ float s_v[33];
    __shared__ int s_i[33];
    __shared__ double s_d[33];
    const float* row = logits + (long long)blockIdx.x * vocab;
    float mx;
    int arg;
    block_argmax(row, vocab, s_v, s_i, &mx, &arg);
    double sum = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += (double)expf(row[i] - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) s_d[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += s_d[w];
        const int t = targets[blockIdx.x];
        out_lp[blockIdx.x] = (double)row[t] - (double)mx - log(total);
        out_greedy[blockIdx.x] = arg == t ? 1 : 0;
    }
}

// Order-preserving map of floats to unsigned keys (larger float, larger key).
__device__ __forceinline__ u32 order_key(float f) {
    const u32 u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Probability mass in fixed point (2^40 = 1), so that sums are exact and the
// choice does not depend on the order of atomic additions.
#define MASS_ONE 1099511627776.0
__device__ __forceinline__ u64 mass_of(float logit, float mx, float inv_t) {
    return (u64)((double)expf((logit - mx) * inv_t) * MASS_ONE);
}

__device__ __forceinline__ u64 block_sum_u64(u64 v, u64* scratch) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        u64 t = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) t += scratch[w];
        scratch[32] = t;
    }
    __syncthreads();
    return scratch[32];
}

// Radix select over the keys of candidates (key >= floor), most significant
// byte first: the key at which the running total (count when `by_mass` is
// 0, probability mass otherwise), taken from the largest key down, first
// reaches `target`.
__device__ u32 radix_select(const float* __restrict__ row, int vocab, u32 floor, u64 target,
                            int by_mass, float mx, float inv_t, u64* hist, u64* s_sel) {
    u32 prefix = 0, mask = 0;
    u64 remaining = target;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float v = row[i];
            const u32 key = order_key(v);
            if (key >= floor && (key & mask) == prefix) {
                atomicAdd(&hist[(key >> shift) & 255u], by_mass ? mass_of(v, mx, inv_t) : 1ull);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u64 cum = 0;
            int b = 255;
            for (; b > 0; --b) {
                if (cum + hist[b] >= remaining) break;
                cum += hist[b];
            }
            s_sel[0] = (u64)b;
            s_sel[1] = remaining - cum;
        }
        __syncthreads();
        prefix |= (u32)s_sel[0] << shift;
        mask |= 255u << shift;
        remaining = s_sel[1];
        __syncthreads();
    }
    return prefix;
}

// Picks one token per row. temperature <= 1e-6 or top_k == 1: argmax.
// Otherwise softmax(logits / temperature) restricted to the top_k largest
// (0 = all), then to the smallest most-likely set whose mass reaches top_p,
// sampled by inverse CDF in token-id order with the uniform us[r] (drawn on
// the host from the sequence's seeded generator).
extern "C" __global__ void __launch_bounds__(ROW_THREADS) sample_tokens(
    int* __restrict__ out, const float* __restrict__ logits, const float* __restrict__ temps,
    const float* __restrict__ top_ps, const int* __restrict__ top_ks,
    const double* __restrict__ us, int vocab) {
    __shared__ float s_v[33];
    __shared__ int s_i[33];
    __shared__ u64 hist[256];
    __shared__ u64 s_u[34];
    const int r = blockIdx.x;
    const float* row = logits + (long long)r * vocab;
    float mx;
    int arg;
    block_argmax(row, vocab, s_v, s_i, &mx, &arg);
    const float temp = temps[r];
    const int top_k = top_ks[r];
    if (!(temp > 1e-6f) || top_k == 1 || !(mx > -INFINITY)) {
        if (threadIdx.x == 0) out[r] = arg;
        return;
    }
    const float inv_t = 1.0f / temp;

    u32 floor = 0;
    if (top_k > 0 && top_k < vocab) {
        floor = radix_select(row, vocab, 0u, (u64)top_k, 0, mx, inv_t, hist, s_u);
    }
    const float top_p = top_ps[r];
    if (top_p < 1.0f) {
        u64 local = 0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float v = row[i];
            if (order_key(v) >= floor) local += mass_of(v, mx, inv_t);
        }
        const u64 total = block_sum_u64(local, s_u);
        u64 target = (u64)((double)top_p * (double)total);
        if (target == 0) target = 1;
        const u32 p_floor = radix_select(row, vocab, floor, target, 1, mx, inv_t, hist, s_u);
        floor = p_floor > floor ? p_floor : floor;
    }

    // Inverse CDF in id order: each thread owns a contiguous range.
    const int chunk = (vocab + blockDim.x - 1) / blockDim.x;
    const int begin = min(vocab, (int)threadIdx.x * chunk);
    const int end = min(vocab, begin + chunk);
    u64 local = 0;
    for (int i = begin; i < end; ++i) {
        const float v = row[i];
        if (order_key(v) >= floor) local += mass_of(v, mx, inv_t);
    }
    // Inclusive scan over the block.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64 incl = local;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u64 n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
    }
    __syncthreads();
    if (lane == 31) s_u[warp] = incl;
    __syncthreads();
    if (threadIdx.x == 0) {
        u64 run = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) {
            const u64 t = s_u[w];
            s_u[w] = run;
            run += t;
        }
        s_u[32] = run;
        s_u[33] = (u64)0xffffffffu;  // chosen token, none yet
    }
    __syncthreads();
    incl += s_u[warp];
    const u64 excl = incl - local;
    const u64 total = s_u[32];
    u64 target = (u64)(us[r] * (double)total);
    if (target >= total) target = total - 1;
    if (local > 0 && excl <= target && target < incl) {
        u64 run = excl;
        for (int i = begin; i < end; ++i) {
            const float v = row[i];
            if (order_key(v) >= floor) {
                run += mass_of(v, mx, inv_t);
                if (run > target) {
                    s_u[33] = (u64)i;
                    break;
                }
            }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) out[r] = s_u[33] == (u64)0xffffffffu ? arg : (int)s_u[33];
}
