//! Loading a Hugging Face model directory: `config.json` plus safetensors
//! weights (one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`), converted from bf16/f16/f32 to f32, and
//! the text side: `tokenizer_config.json` (chat template, special tokens),
//! `chat_template.jinja`/`chat_template.json`, `generation_config.json`
//! (end-of-generation ids).

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

/// The weight files the loader reads from `dir`: the single safetensors
/// file, or the index followed by every shard it names (sorted, once each).
pub fn weight_file_paths(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    Ok(match weight_files(dir)? {
        WeightFiles::Single(file) => vec![file],
        WeightFiles::Sharded { index, map } => {
            let shards: std::collections::BTreeSet<PathBuf> =
                map.values().map(|shard| dir.join(shard)).collect();
            std::iter::once(index).chain(shards).collect()
        }
    })
}

/// What a Hugging Face directory says about turning chat into text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HfTextConfig {
    /// The default chat template: `chat_template.jinja`, else
    /// `chat_template.json`, else `tokenizer_config.json`'s `chat_template`
    /// (a string, or a list of named templates of which `default` is used).
    pub chat_template: Option<String>,
    /// `bos_token` / `eos_token` of `tokenizer_config.json`, as text.
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// End-of-generation ids of `generation_config.json` (`eos_token_id`,
    /// one id or a list).
    pub generation_eos_token_ids: Vec<u32>,
}

/// Reads the optional text-side files of a Hugging Face directory; missing
/// files mean "not set", malformed ones are errors naming the file.
pub fn read_text_config(dir: &Path) -> Result<HfTextConfig, EngineError> {
    let mut out = HfTextConfig::default();
    let tokenizer_config = read_json_opt(&dir.join("tokenizer_config.json"))?;
    if let Some((path, v)) = &tokenizer_config {
        out.bos_token = token_text(v.get("bos_token"));
        out.eos_token = token_text(v.get("eos_token"));
        out.chat_template = match v.get("chat_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(t) => Some(template_text(t).ok_or_else(|| {
                EngineError::Config {
                    path: path.clone(),
                    message: "`chat_template` must be a string or a list of {name, template} \
                          objects"
                        .into(),
                }
            })?),
        };
    }
    if let Some((path, v)) = read_json_opt(&dir.join("chat_template.json"))? {
        let t = v
            .get("chat_template")
            .and_then(template_text)
            .ok_or_else(|| EngineError::Config {
                path: path.clone(),
                message: "needs a `chat_template` string".into(),
            })?;
        out.chat_template = Some(t);
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        out.chat_template =
            Some(
                std::fs::read_to_string(&jinja).map_err(|source| EngineError::Io {
                    path: jinja.clone(),
                    source,
                })?,
            );
    }
    if let Some((path, v)) = read_json_opt(&dir.join("generation_config.json"))? {
        out.generation_eos_token_ids = match v.get("eos_token_id") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| EngineError::Config {
                    path: path.clone(),
                    message: "`eos_token_id` must be a token id or a list of token ids".into(),
                })?,
            Some(id) => vec![id
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| EngineError::Config {
                    path: path.clone(),
                    message: "`eos_token_id` must be a token id or a list of token ids".into(),
                })?],
        };
    }
    Ok(out)
}

fn read_json_opt(path: &Path) -> Result<Option<(PathBuf, serde_json::Value)>, EngineError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value = serde_json::from_str(&text).map_err(|e| EngineError::Config {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })?;
    Ok(Some((path.to_path_buf(), value)))
}

/// A special token as `tokenizer_config.json` writes it: a string or an
/// AddedToken object with `content`.
fn token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn template_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => {
            let pick = |want: Option<&str>| {
                named.iter().find_map(|t| {
                    let name = t.get("name")?.as_str()?;
                    if want.is_none_or(|w| w == name) {
                        t.get("template")?.as_str().map(str::to_string)
                    } else {
                        None
                    }
                })
            };
            pick(Some("default")).or_else(|| pick(None))
        }
        _ => None,
    }
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
