//! Model fingerprints: a sha256 over everything that decides a model's
//! outputs (weights, tokenizer, chat template, generation config), the
//! identity an engine model has in request keys.
//!
//! A GGUF file holds all of that, so its fingerprint is simply the file's
//! sha256 (what `sha256sum` prints). A Hugging Face directory is hashed file
//! by file; the fingerprint is the sha256 of a manifest listing each file's
//! name and digest. File digests are cached in a sidecar folder keyed by
//! (canonical path, size, modification time), so a 16 GB model is read once,
//! not at every run.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped if the manifest of a Hugging Face directory changes shape.
const MANIFEST_HEADER: &str = "shardline-hf-model-v1\n";

/// Files of a Hugging Face directory hashed when present, besides the
/// weights (which are always hashed) and the ones that must exist.
const HF_OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Files a Hugging Face directory must have.
const HF_REQUIRED_FILES: &[&str] = &["config.json", "tokenizer.json"];

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    NotAModel { path: PathBuf, detail: String },
}

/// How a model is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// One `.gguf` file.
    Gguf,
    /// A Hugging Face directory: `config.json`, safetensors, `tokenizer.json`.
    HfDir,
}

/// Tells a GGUF file from a Hugging Face directory, with an error that says
/// what was expected when `path` is neither.
pub fn detect_format(path: &Path) -> Result<ModelFormat, FingerprintError> {
    let meta = std::fs::metadata(path).map_err(|source| FingerprintError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        if !path.join("config.json").is_file() {
            return Err(FingerprintError::NotAModel {
                path: path.to_path_buf(),
                detail: "this directory has no config.json; a model path is a GGUF file or a \
                         Hugging Face model directory (config.json, *.safetensors, tokenizer.json)"
                    .into(),
            });
        }
        return Ok(ModelFormat::HfDir);
    }
    let mut magic = [0u8; 4];
    let read = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|source| FingerprintError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if read == 4 && &magic == b"GGUF" {
        Ok(ModelFormat::Gguf)
    } else {
        Err(FingerprintError::NotAModel {
            path: path.to_path_buf(),
            detail: format!(
                "not a GGUF file (first bytes {:02x?}, expected \"GGUF\"); a model path is a GGUF \
                 file or a Hugging Face model directory",
                &magic[..read]
            ),
        })
    }
}

/// The files whose digests make up the fingerprint, with the names they
/// have in the manifest, sorted by name.
pub fn model_files(path: &Path) -> Result<Vec<(String, PathBuf)>, FingerprintError> {
    match detect_format(path)? {
        ModelFormat::Gguf => Ok(vec![(file_name(path), path.to_path_buf())]),
        ModelFormat::HfDir => {
            let mut files = Vec::new();
            for name in HF_REQUIRED_FILES {
                let p = path.join(name);
                if !p.is_file() {
                    return Err(FingerprintError::NotAModel {
                        path: path.to_path_buf(),
                        detail: format!("{name} is missing from this model directory"),
                    });
                }
                files.push((name.to_string(), p));
            }
            for name in HF_OPTIONAL_FILES {
                let p = path.join(name);
                if p.is_file() {
                    files.push((name.to_string(), p));
                }
            }
            let weights =
                crate::hf::weight_file_paths(path).map_err(|e| FingerprintError::NotAModel {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            for p in weights {
                files.push((file_name(&p), p));
            }
            files.sort();
            files.dedup();
            Ok(files)
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The model's fingerprint: 64 lowercase hex characters.
pub fn fingerprint_model(path: &Path, cache: &DigestCache) -> Result<String, FingerprintError> {
    let format = detect_format(path)?;
    let files = model_files(path)?;
    match format {
        ModelFormat::Gguf => cache.file_digest(path),
        ModelFormat::HfDir => {
            let mut manifest = String::from(MANIFEST_HEADER);
            for (name, p) in &files {
                manifest.push_str(&format!("{name}\t{}\n", cache.file_digest(p)?));
            }
            Ok(hex::encode(Sha256::digest(manifest.as_bytes())))
        }
    }
}

/// Where file digests are remembered between runs.
#[derive(Clone, Debug)]
pub struct DigestCache {
    dir: Option<PathBuf>,
}

/// One remembered digest.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Entry {
    path: String,
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

impl DigestCache {
    /// Digests remembered under `dir` (created on first write).
    pub fn new(dir: PathBuf) -> DigestCache {
        DigestCache { dir: Some(dir) }
    }

    /// Nothing remembered: every call hashes.
    pub fn disabled() -> DigestCache {
        DigestCache { dir: None }
    }

    /// `$SHARDLINE_FINGERPRINT_CACHE`, else `$XDG_CACHE_HOME/shardline/fingerprints`,
    /// else `~/.cache/shardline/fingerprints`; disabled when none can be
    /// found.
    pub fn default_location() -> DigestCache {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = var("SHARDLINE_FINGERPRINT_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("shardline/fingerprints"))
            })
            .or_else(|| {
                var("HOME").map(|h| PathBuf::from(h).join(".cache/shardline/fingerprints"))
            });
        DigestCache { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The sha256 of the file at `path`, from the cache when its canonical
    /// path, size and modification time match an entry, else by reading it
    /// (and remembering the result; a cache that cannot be written only
    /// costs a re-hash next time).
    pub fn file_digest(&self, path: &Path) -> Result<String, FingerprintError> {
        let io = |source| FingerprintError::Io {
            path: path.to_path_buf(),
            source,
        };
        let canonical = std::fs::canonicalize(path).map_err(io)?;
        let meta = std::fs::metadata(&canonical).map_err(io)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = Entry {
            path: canonical.to_string_lossy().into_owned(),
            size: meta.len(),
            mtime_ns,
            sha256: String::new(),
        };
        let sidecar = self.dir.as_ref().map(|d| {
            d.join(format!(
                "{}.json",
                &hex::encode(Sha256::digest(key.path.as_bytes()))[..40]
            ))
        });
        if let Some(sidecar) = &sidecar {
            if let Some(hit) = read_entry(sidecar) {
                if hit.path == key.path
                    && hit.size == key.size
                    && hit.mtime_ns == key.mtime_ns
                    && is_digest(&hit.sha256)
                {
                    return Ok(hit.sha256);
                }
            }
        }
        let digest = sha256_file(&canonical).map_err(io)?;
        if let Some(sidecar) = &sidecar {
            let entry = Entry {
                sha256: digest.clone(),
                ..key
            };
            if let Err(e) = write_entry(sidecar, &entry) {
                tracing::warn!(error = %e, cache = %sidecar.display(),
                    "cannot remember the model digest; it will be computed again next time");
            }
        }
        Ok(digest)
    }
}

/// Whether `s` looks like a sha256 digest (64 lowercase hex characters).
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn read_entry(path: &Path) -> Option<Entry> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Written under a temporary name and renamed, so a concurrent reader never
/// sees half an entry.
fn write_entry(path: &Path, entry: &Entry) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(entry).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn gguf_fingerprint_is_the_file_sha256_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        write(&model, b"GGUF rest of a file");
        let cache = DigestCache::new(dir.path().join("cache"));
        let fp = fingerprint_model(&model, &cache).unwrap();
        assert_eq!(fp, hex::encode(Sha256::digest(b"GGUF rest of a file")));
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            1
        );

        // A cache entry is trusted while path, size and mtime match: a
        // doctored digest proves the file was not read again.
        let entry_path = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut entry: Entry = read_entry(&entry_path).unwrap();
        entry.sha256 = "ab".repeat(32);
        write_entry(&entry_path, &entry).unwrap();
        assert_eq!(fingerprint_model(&model, &cache).unwrap(), "ab".repeat(32));

        // Any change of size (or mtime) is a miss: the real digest again.
        write(&model, b"GGUF another, longer file");
        assert_eq!(
            fingerprint_model(&model, &cache).unwrap(),
            hex::encode(Sha256::digest(b"GGUF another, longer file"))
        );
        // Without a cache the digest is computed from the bytes.
        assert_eq!(
            fingerprint_model(&model, &DigestCache::disabled()).unwrap(),
            hex::encode(Sha256::digest(b"GGUF another, longer file"))
        );
    }

    #[test]
    fn hf_fingerprint_covers_weights_tokenizer_and_template() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("model");
        std::fs::create_dir(&m).unwrap();
        write(&m.join("config.json"), b"{}");
        write(&m.join("tokenizer.json"), b"{\"t\": 1}");
        write(&m.join("model.safetensors"), b"weights");
        write(&m.join("README.md"), b"not hashed");
        let cache = DigestCache::disabled();
        let names: Vec<String> = model_files(&m).unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(
            names,
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
        let base = fingerprint_model(&m, &cache).unwrap();
        assert!(is_digest(&base), "{base}");

        write(&m.join("README.md"), b"edited");
        assert_eq!(fingerprint_model(&m, &cache).unwrap(), base);
        let mut seen = vec![base.clone()];
        for (file, bytes) in [
            ("tokenizer_config.json", &b"{\"chat_template\": \"x\"}"[..]),
            ("tokenizer_config.json", b"{\"chat_template\": \"y\"}"),
            ("model.safetensors", b"other weights"),
            ("tokenizer.json", b"{\"t\": 2}"),
            ("generation_config.json", b"{\"eos_token_id\": 3}"),
        ] {
            write(&m.join(file), bytes);
            let fp = fingerprint_model(&m, &cache).unwrap();
            assert!(
                !seen.contains(&fp),
                "changing {file} must change the fingerprint"
            );
            seen.push(fp);
        }
    }

    #[test]
    fn not_a_model_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::disabled();
        let e = fingerprint_model(&dir.path().join("nope.gguf"), &cache).unwrap_err();
        assert!(e.to_string().contains("nope.gguf"), "{e}");
        let junk = dir.path().join("junk.gguf");
        write(&junk, b"<html>");
        let e = fingerprint_model(&junk, &cache).unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        let e = fingerprint_model(dir.path(), &cache)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no config.json"), "{e}");
        write(&dir.path().join("config.json"), b"{}");
        let e = fingerprint_model(dir.path(), &cache)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.json is missing"), "{e}");
    }
}
