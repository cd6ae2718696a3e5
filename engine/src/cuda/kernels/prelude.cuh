// Shared definitions for every Shardline kernel. Compiled by NVRTC with no
// include path: bf16 is handled as raw 16-bit patterns here instead of
// through cuda_bf16.h, so the kernels need no CUDA headers on the machine
// that runs them.
//
// Compile-time constants (passed as -D options by the host):
//   HEAD_DIM    the model's head size
//   GQA_GROUP   query heads per KV head

#ifndef HEAD_DIM
#error "HEAD_DIM must be defined"
#endif
#ifndef GQA_GROUP
#error "GQA_GROUP must be defined"
#endif

typedef unsigned short bf16_t;
typedef unsigned int u32;
typedef unsigned long long u64;

// No math headers under NVRTC without include paths.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Used as "minus infinity" in softmax state: finite, so that subtracting
// two of them gives 0 rather than NaN for empty ranges.
#define NEG_BIG (-1.0e30f)

__device__ __forceinline__ float bf16_to_f32(bf16_t b) {
    return __uint_as_float(((u32)b) << 16);
}

// Round to nearest even, NaN kept NaN (as PyTorch's conversion does).
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (bf16_t)((u >> 16) | 0x40u);
    }
    u32 rounding = 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)((u + rounding) >> 16);
}

// Two bf16 in one 32-bit register, `lo` in the low half (the lower address
// and the lower column in MMA fragments).
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    return (u32)f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result. `scratch` holds 33 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < warps ? scratch[lane] : 0.0f;
        t = warp_sum(t);
        if (lane == 0) scratch[32] = t;
    }
    __syncthreads();
    return scratch[32];
}

// Per-lane share of a head vector in warp-per-head kernels: lane `l` owns
// dims [l * HEAD_EPL, (l + 1) * HEAD_EPL) when they exist.
#define HEAD_EPL ((HEAD_DIM + 31) / 32)
