//! The GGUF container (v2 and v3, little-endian): header, metadata
//! key/values, tensor infos and the aligned data section, read over a
//! memory map without copying tensor data until it is dequantised.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::quant::{dequantize, GgmlType};
use super::GgufError;

/// `GGUF` read as a little-endian u32.
const MAGIC: u32 = 0x4655_4747;
/// Alignment of the data section and of every tensor when the file does not
/// set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Caps on counts read from the header, so that a corrupt file fails with a
/// clear error instead of asking for terabytes.
const MAX_STRING_LEN: u64 = 1 << 30;
const MAX_DIMS: u32 = 4;

/// A metadata value. Arrays hold values of one type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::U64(v) => i64::try_from(v).ok(),
            MetaValue::I8(v) => Some(v as i64),
            MetaValue::I16(v) => Some(v as i64),
            MetaValue::I32(v) => Some(v as i64),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }
}

/// Where one tensor lies in the file and how it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The llama.cpp name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in row-major (PyTorch) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the mapped bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{what} at byte {}", self.pos),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(self.corrupt(format!("{what}: string length {len} is implausible")));
        }
        let bytes = self.take(len as usize, what)?;
        // Token strings are normally UTF-8; keep going on the odd invalid
        // one (replacement characters) rather than refuse the model.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.corrupt(format!("metadata {key:?}: bool byte {b}"))),
            },
            8 => MetaValue::String(self.string(key)?),
            9 => {
                if depth > 0 {
                    // The spec allows nested arrays; no model nests more than
                    // one level, and the cap stops runaway recursion.
                    let elem = self.u32(key)?;
                    let n = self.u64(key)?;
                    let mut out = Vec::new();
                    for _ in 0..n {
                        out.push(self.value(elem, key, depth - 1)?);
                    }
                    return Ok(MetaValue::Array(out));
                }
                return Err(self.corrupt(format!("metadata {key:?}: arrays nested too deep")));
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(self.corrupt(format!("metadata {key:?}: unknown value type {other}")))
            }
        })
    }
}

impl GgufFile {
    /// Opens and parses the header, metadata and tensor infos of a GGUF file.
    /// Tensor data is validated for bounds here and decoded on demand.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only; model files are not modified while a
        // worker runs (a truncation under us would be a SIGBUS, the same risk
        // every mmap-based loader takes).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut c = Cursor {
            bytes: &mmap,
            pos: 0,
            path,
        };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: path.to_path_buf(),
                found: mmap.get(..4).map(|b| b.to_vec()).unwrap_or_default(),
            });
        }
        let version = c.u32("version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
                hint: "this is a big-endian GGUF file; use a little-endian conversion",
            });
        }
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
                hint: "only GGUF v2 and v3 are read; re-convert the model with a current llama.cpp",
            });
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // Every entry takes at least 8 bytes, which bounds honest counts.
        let max_entries = mmap.len() as u64 / 8;
        if n_tensors > max_entries || n_kv > max_entries {
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: format!(
                    "the {n_tensors} tensors and {n_kv} metadata entries the header announces \
                     (the file has {} bytes)",
                    mmap.len()
                ),
            });
        }

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&key)?;
            let value = c.value(ty, &key, 2)?;
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(c.corrupt(format!(
                        "general.alignment = {v:?} is not a positive power of two"
                    )))
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor #{i} name"))?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.corrupt(format!("tensor {name:?}: {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&name)?);
            }
            let ggml_type = GgmlType::from_id(c.u32(&name)?);
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }

        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let out = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            mmap,
        };
        for t in &out.tensors {
            out.byte_range(t)?;
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The absolute byte range of a tensor's data, checked against the file.
    fn byte_range(&self, t: &TensorInfo) -> Result<std::ops::Range<usize>, GgufError> {
        let corrupt = |detail: String| GgufError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| corrupt(format!("tensor {:?}: dims {:?} overflow", t.name, t.dims)))?;
        let size = match t.ggml_type.byte_size(n) {
            Some(s) => s,
            None if t.ggml_type.block_layout().is_none() => {
                return Err(GgufError::UnsupportedType {
                    path: self.path.clone(),
                    tensor: t.name.clone(),
                    ggml_type: t.ggml_type.name(),
                })
            }
            None => {
                return Err(corrupt(format!(
                    "tensor {:?}: {n} elements is not a whole number of {} blocks",
                    t.name,
                    t.ggml_type.name()
                )))
            }
        };
        if !t.offset.is_multiple_of(self.alignment) {
            return Err(corrupt(format!(
                "tensor {:?}: offset {} is not a multiple of the alignment {}",
                t.name, t.offset, self.alignment
            )));
        }
        let start = self.data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(size));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.mmap.len() as u64 => Ok(s as usize..e as usize),
            _ => Err(GgufError::Truncated {
                path: self.path.clone(),
                what: format!(
                    "tensor {:?} ({} bytes at data offset {}; the file has {} bytes)",
                    t.name,
                    size,
                    t.offset,
                    self.mmap.len()
                ),
            }),
        }
    }

    /// The raw stored bytes of a tensor.
    pub fn raw(&self, t: &TensorInfo) -> Result<&[u8], GgufError> {
        let r = self.byte_range(t)?;
        Ok(&self.mmap[r])
    }

    /// Dequantises a tensor to f32 in ggml order (innermost dimension
    /// contiguous), which is the row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let raw = self.raw(t)?;
        dequantize(t.ggml_type, raw).ok_or_else(|| GgufError::UnsupportedType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            ggml_type: t.ggml_type.name(),
        })
    }
}
