//! Finding the CUDA shared libraries before cudarc touches them.
//!
//! cudarc loads libcuda, libnvrtc and libcublasLt lazily by name and panics
//! when one is missing. Everything here runs first: it checks each library
//! by name, and when the dynamic loader cannot find one it looks in the
//! usual install folders and loads it by full path, which makes the later
//! load by name succeed (the loader matches the library's soname). A missing
//! library thus becomes a clear [`EngineError::CudaUnavailable`], never a
//! panic.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::EngineError;

/// A CUDA library cudarc loads, and the file names it may have.
#[derive(Clone, Copy, Debug)]
pub enum CudaLib {
    Driver,
    Nvrtc,
    CublasLt,
}

impl CudaLib {
    fn label(self) -> &'static str {
        match self {
            CudaLib::Driver => "CUDA driver (libcuda.so.1)",
            CudaLib::Nvrtc => "NVRTC (libnvrtc.so.13)",
            CudaLib::CublasLt => "cuBLASLt (libcublasLt.so.13)",
        }
    }

    fn file_names(self) -> &'static [&'static str] {
        match self {
            CudaLib::Driver => &["libcuda.so.1", "libcuda.so"],
            CudaLib::Nvrtc => &["libnvrtc.so.13", "libnvrtc.so"],
            CudaLib::CublasLt => &["libcublasLt.so.13", "libcublasLt.so"],
        }
    }

    /// Libraries it loads by name itself, to be loaded from its folder first.
    fn companions(self) -> &'static [&'static str] {
        match self {
            CudaLib::Nvrtc => &["libnvrtc-builtins.so.13.0"],
            _ => &[],
        }
    }

    /// Whether cudarc can load it by name now.
    fn present(self) -> bool {
        // SAFETY: these only try to dlopen the library by its usual names.
        unsafe {
            match self {
                CudaLib::Driver => cudarc::driver::sys::is_culib_present(),
                CudaLib::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                CudaLib::CublasLt => cudarc::cublaslt::sys::is_culib_present(),
            }
        }
    }
}

/// Folders searched when the dynamic loader does not find a library:
/// `SHARDLINE_CUDA_LIB_DIR` (colon-separated), `SHARDLINE_NVRTC_LIB_DIR`
/// (what scripts/ensure-nvrtc.sh prints), `$CUDA_HOME/lib64`,
/// `$CUDA_PATH/lib64`, then the standard toolkit folders.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["SHARDLINE_CUDA_LIB_DIR", "SHARDLINE_NVRTC_LIB_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.push(Path::new(&v).join("lib64"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.push(PathBuf::from("/usr/local/cuda/targets/x86_64-linux/lib"));
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs
}

/// Libraries loaded by full path, kept loaded for the life of the process.
static PINNED: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());

/// Makes `lib` loadable by cudarc, or says why it is not.
pub fn ensure(lib: CudaLib) -> Result<(), EngineError> {
    if lib.present() {
        return Ok(());
    }
    let dirs = search_dirs();
    let mut tried = Vec::new();
    for dir in &dirs {
        for name in lib.file_names() {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            // NVRTC opens its builtins library by name at compile time;
            // loading it first from the same folder makes that succeed.
            for dep in lib.companions() {
                let dep_path = dir.join(dep);
                if dep_path.is_file() {
                    // SAFETY: as below; the builtins library has no
                    // initialisers beyond the loader's.
                    if let Ok(h) = unsafe { libloading::Library::new(&dep_path) } {
                        if let Ok(mut pinned) = PINNED.lock() {
                            pinned.push(h);
                        }
                    }
                }
            }
            // SAFETY: loading a CUDA library runs its initialisers, which
            // is what cudarc would do on first use anyway.
            match unsafe { libloading::Library::new(&path) } {
                Ok(handle) => {
                    if let Ok(mut pinned) = PINNED.lock() {
                        pinned.push(handle);
                    }
                    if lib.present() {
                        return Ok(());
                    }
                    tried.push(format!(
                        "{} (loaded, but not found by name)",
                        path.display()
                    ));
                }
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let what = lib.label();
    let detail = if tried.is_empty() {
        format!(
            "not on the loader path (LD_LIBRARY_PATH) nor in {}",
            searched.join(", ")
        )
    } else {
        format!("found but not loadable: {}", tried.join("; "))
    };
    let hint = match lib {
        CudaLib::Driver => "install the NVIDIA driver (CUDA 13.0 or newer) or run with --device cpu",
        CudaLib::Nvrtc => "install the CUDA 13.0 toolkit or `pip install nvidia-cuda-nvrtc==13.0.*` and set SHARDLINE_NVRTC_LIB_DIR to its nvidia/cu13/lib folder",
        CudaLib::CublasLt => "install the CUDA 13.0 toolkit or `pip install nvidia-cublas` and set SHARDLINE_CUDA_LIB_DIR to its nvidia/cu13/lib folder",
    };
    let prefix = match lib {
        CudaLib::Driver => "CUDA driver not found",
        _ => "CUDA library not found",
    };
    Err(EngineError::CudaUnavailable(format!(
        "{prefix}: {what} is {detail}; {hint}"
    )))
}
