//! Linear layers through cuBLASLt: `y[t×n] (+)= x[t×k] · w[n×k]ᵀ` with bf16
//! inputs, fp32 accumulation and an fp32 output. Accumulating into the
//! residual stream (beta = 1) fuses the residual add into the GEMM epilogue.
//!
//! cudarc's safe cuBLASLt wrapper wants one element type for A, B and C, so
//! the descriptors are built here from its `result` layer. A plan (layouts,
//! descriptor and the heuristic's algorithm) is cached per shape: decode
//! steps repeat the same few shapes thousands of times.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem;
use std::sync::Arc;

use cudarc::cublaslt::{result, sys};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use crate::error::EngineError;

/// What the heuristic is asked for; cuBLASLt recommends 32 MiB on Hopper.
const WORKSPACE_BYTES: usize = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    t: usize,
    n: usize,
    k: usize,
    accumulate: bool,
}

struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: the handles were created by this plan and are destroyed
        // once; errors on teardown have nobody to report to.
        unsafe {
            let _ = result::destroy_matrix_layout(self.a);
            let _ = result::destroy_matrix_layout(self.b);
            let _ = result::destroy_matrix_layout(self.c);
            let _ = result::destroy_matmul_desc(self.desc);
        }
    }
}

fn lt_err(what: &str, e: result::CublasError) -> EngineError {
    EngineError::Cuda(format!("cuBLASLt {what}: {e}"))
}

/// A cuBLASLt handle, its workspace and the plans made so far.
pub(crate) struct Gemm {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
    plans: HashMap<PlanKey, Plan>,
}

// SAFETY: a cuBLASLt handle and its descriptors may be used from any
// thread as long as calls are not concurrent; `Gemm` is only used through
// `&mut self` of the executor that owns it, and the executor binds its
// CUDA context to the calling thread before every step.
unsafe impl Send for Gemm {}

impl Drop for Gemm {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = result::destroy_handle(self.handle);
        }
    }
}

impl Gemm {
    pub(crate) fn new(stream: Arc<CudaStream>) -> Result<Gemm, EngineError> {
        let handle = result::create_handle().map_err(|e| lt_err("create handle", e))?;
        let workspace = stream
            .alloc_zeros::<u8>(WORKSPACE_BYTES)
            .map_err(|e| EngineError::Cuda(format!("allocating the cuBLASLt workspace: {e}")))?;
        Ok(Gemm {
            handle,
            workspace,
            stream,
            plans: HashMap::new(),
        })
    }

    fn plan(&mut self, key: PlanKey) -> Result<&Plan, EngineError> {
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(key)?;
            self.plans.insert(key, plan);
        }
        Ok(&self.plans[&key])
    }

    fn make_plan(&self, key: PlanKey) -> Result<Plan, EngineError> {
        let (t, n, k) = (key.t as u64, key.n as u64, key.k as u64);
        // Column-major view: W (row-major n×k) is a k×n matrix used
        // transposed; X (row-major t×k) is k×t; Y (row-major t×n) is n×t.
        let a = result::create_matrix_layout(sys::cudaDataType_t::CUDA_R_16BF, k, n, k as i64)
            .map_err(|e| lt_err("layout", e))?;
        let b = result::create_matrix_layout(sys::cudaDataType_t::CUDA_R_16BF, k, t, k as i64)
            .map_err(|e| lt_err("layout", e))?;
        let c = result::create_matrix_layout(sys::cudaDataType_t::CUDA_R_32F, n, t, n as i64)
            .map_err(|e| lt_err("layout", e))?;
        let desc = result::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(|e| lt_err("descriptor", e))?;
        // From here the plan owns the handles (and frees them on error).
        let mut plan = Plan {
            desc,
            a,
            b,
            c,
            // SAFETY: plain-old-data struct, overwritten below.
            algo: unsafe { mem::zeroed() },
        };
        let transpose: i32 = 1; // CUBLAS_OP_T
                                // SAFETY: valid descriptor; the attribute is an i32 as documented.
        unsafe {
            result::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&transpose) as *const i32 as *const c_void,
                mem::size_of::<i32>(),
            )
            .map_err(|e| lt_err("transpose attribute", e))?;
        }
        let pref = result::create_matmul_pref().map_err(|e| lt_err("preference", e))?;
        let ws = WORKSPACE_BYTES;
        // SAFETY: valid handles; the preference is destroyed right after.
        let heuristic = unsafe {
            let set = result::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws) as *const usize as *const c_void,
                mem::size_of::<usize>(),
            );
            let h = set.and_then(|_| {
                result::get_matmul_algo_heuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.c,
                    plan.c,
                    pref,
                )
            });
            let _ = result::destroy_matmul_pref(pref);
            h.map_err(|e| {
                lt_err(
                    &format!("no algorithm for {t}x{n}x{k} (bf16 in, f32 out)"),
                    e,
                )
            })?
        };
        plan.algo = heuristic.algo;
        Ok(plan)
    }

    /// `y[t×n] = x[t×k] · w[n×k]ᵀ`, or `+=` when `accumulate`.
    ///
    /// # Safety
    /// `y` (f32, t×n), `x` (bf16, t×k) and `w` (bf16, n×k) must be device
    /// pointers to allocations of at least those sizes, valid until the
    /// stream has run the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn linear(
        &mut self,
        y: u64,
        x: u64,
        w: u64,
        t: usize,
        n: usize,
        k: usize,
        accumulate: bool,
    ) -> Result<(), EngineError> {
        if t == 0 {
            return Ok(());
        }
        let key = PlanKey {
            t,
            n,
            k,
            accumulate,
        };
        let handle = self.handle;
        let stream = self.stream.clone();
        // Event tracking is off (one stream), so the guard has nothing to do.
        let ws_ptr = self.workspace.device_ptr(&stream).0;
        let plan = self.plan(key)?;
        let alpha: f32 = 1.0;
        let beta: f32 = if accumulate { 1.0 } else { 0.0 };
        result::matmul(
            handle,
            plan.desc,
            (&alpha) as *const f32 as *const c_void,
            (&beta) as *const f32 as *const c_void,
            w as *const c_void,
            plan.a,
            x as *const c_void,
            plan.b,
            y as *const c_void,
            plan.c,
            y as *mut c_void,
            plan.c,
            &plan.algo,
            ws_ptr as *mut c_void,
            WORKSPACE_BYTES,
            stream.cu_stream() as sys::cudaStream_t,
        )
        .map_err(|e| lt_err(&format!("matmul {t}x{n}x{k}"), e))
    }
}
