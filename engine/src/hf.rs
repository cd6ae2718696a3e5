//! Loading a Hugging Face model directory: `config.json` plus safetensors
//! weights (one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`), converted from bf16/f16/f32 to f32.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::EngineError;
use crate::layout::{check_weights, expected_tensors};
use crate::weights::{Tensor, Weights};

/// Reads `dir/config.json` and the safetensors weights next to it.
pub fn load_hf_model(dir: &Path) -> Result<(ModelConfig, Weights), EngineError> {
    let config = ModelConfig::from_hf_config_json(&dir.join("config.json"))?;
    let weights = load_safetensors(dir, &config)?;
    Ok((config, weights))
}

/// Loads every tensor `config` needs from the safetensors file(s) in `dir`,
/// checking names and shapes. Tensors the model does not read are skipped.
pub fn load_safetensors(dir: &Path, config: &ModelConfig) -> Result<Weights, EngineError> {
    let files = weight_files(dir)?;
    let wanted = expected_tensors(config);

    // Which file holds which wanted tensor; an index maps names to shards,
    // a single file holds everything.
    let mut by_file: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    match &files {
        WeightFiles::Single(file) => {
            by_file.insert(
                file.clone(),
                wanted.iter().map(|s| s.name.clone()).collect(),
            );
        }
        WeightFiles::Sharded { index, map } => {
            for spec in &wanted {
                match map.get(&spec.name) {
                    Some(shard) => by_file
                        .entry(dir.join(shard))
                        .or_default()
                        .push(spec.name.clone()),
                    None if spec.required => {
                        return Err(EngineError::MissingTensor {
                            tensor: spec.name.clone(),
                            file: Some(index.clone()),
                            hint: "the index's weight_map does not list it".into(),
                        })
                    }
                    None => {}
                }
            }
        }
    }

    let mut weights = Weights::default();
    for (file, names) in &by_file {
        load_file(file, names, &mut weights)?;
    }
    let source = match &files {
        WeightFiles::Single(f) => f.clone(),
        WeightFiles::Sharded { index, .. } => index.clone(),
    };
    check_weights(config, &weights, Some(&source))?;
    Ok(weights)
}

enum WeightFiles {
    Single(PathBuf),
    Sharded {
        index: PathBuf,
        map: HashMap<String, String>,
    },
}

fn weight_files(dir: &Path) -> Result<WeightFiles, EngineError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| EngineError::Io {
            path: index.clone(),
            source,
        })?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&text).map_err(|e| EngineError::Weights {
            file: index.clone(),
            message: format!("not a valid safetensors index (needs a `weight_map` object): {e}"),
        })?;
        // Shard names come from a file: refuse anything that would escape
        // the model directory.
        for shard in parsed.weight_map.values() {
            let p = Path::new(shard);
            if p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return Err(EngineError::Weights {
                    file: index.clone(),
                    message: format!("shard name {shard:?} points outside the model directory"),
                });
            }
        }
        return Ok(WeightFiles::Sharded {
            index,
            map: parsed.weight_map,
        });
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(WeightFiles::Single(single));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| EngineError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(WeightFiles::Single(found.remove(0))),
        0 => Err(EngineError::Weights {
            file: dir.to_path_buf(),
            message: "no model.safetensors, model.safetensors.index.json or other .safetensors file in this directory".into(),
        }),
        n => Err(EngineError::Weights {
            file: dir.to_path_buf(),
            message: format!("{n} .safetensors files but no model.safetensors.index.json saying which tensor is where"),
        }),
    }
}

fn load_file(file: &Path, names: &[String], weights: &mut Weights) -> Result<(), EngineError> {
    let handle = File::open(file).map_err(|source| EngineError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and lives only for this function; a model
    // file modified while being loaded yields garbage weights, not UB in
    // safe code that reads through the slice (it is plain bytes).
    let mmap = unsafe { memmap2::Mmap::map(&handle) }.map_err(|source| EngineError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| EngineError::Weights {
        file: file.to_path_buf(),
        message: format!("not a valid safetensors file: {e}"),
    })?;
    for name in names {
        let view = match st.tensor(name) {
            Ok(v) => v,
            // Absence is judged by check_weights, which knows what is
            // required and names the tensor.
            Err(_) => continue,
        };
        let data = to_f32(view.dtype(), view.data()).map_err(|message| EngineError::Weights {
            file: file.to_path_buf(),
            message: format!("tensor {name}: {message}"),
        })?;
        let tensor =
            Tensor::new(view.shape().to_vec(), data).ok_or_else(|| EngineError::Weights {
                file: file.to_path_buf(),
                message: format!("tensor {name}: data length does not match its shape"),
            })?;
        weights.tensors.insert(name.clone(), tensor);
    }
    Ok(())
}

/// Little-endian bf16/f16/f32 bytes to f32.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, String> {
    match dtype {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::BF16 => Ok(bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect()),
        Dtype::F16 => Ok(bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect()),
        other => Err(format!(
            "dtype {other:?} is not supported (bf16, f16 and f32 are); convert the checkpoint or use a GGUF file"
        )),
    }
}
