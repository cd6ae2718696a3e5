//! How an engine job's chat turns reach its model's text: the file of
//! `model.chat_template`, read and checked against the digest recorded in
//! the spec (the template is part of the model's identity in request
//! keys), and what to say when a chat job's model has no template at all.

use std::io::Read;
use std::path::PathBuf;

/// Largest chat template file read: real ones are a few kilobytes, and a
/// job must not make a worker read a device or a huge file.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

use engine::TemplateOverride;
use jobs::spec::ModelSpec;
use sha2::{Digest, Sha256};

/// Why `model.chat_template` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateFileError {
    #[error(
        "`model.chat_template`: cannot read {path}: {source}; give the path of a Jinja chat \
         template file (relative to the job file)"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`model.chat_template`: {path} is not UTF-8 text, so it is not a chat template")]
    NotText { path: PathBuf },
    #[error(
        "`model.chat_template`: {path} is not a regular file of at most {MAX_TEMPLATE_BYTES} \
         bytes, so it is not a chat template"
    )]
    NotAFile { path: PathBuf },
    // The file's own digest is not in the message: it becomes the job's
    // error, which the submitter reads, and would tell them what a file of
    // this machine holds. It is logged here instead.
    #[error(
        "the chat template {path} is not the file the job was submitted with (its sha256 differs \
         from `model.chat_template_sha256` {expected}): the file changed since; restore it, or \
         submit the job again to use the new template (its outputs get new keys)"
    )]
    Changed { path: PathBuf, expected: String },
}

/// A chat template file as read: its text, for the engine, and its
/// sha256 (lowercase hex), for the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateFile {
    pub template: TemplateOverride,
    pub sha256: String,
}

/// Reads `model.chat_template` (`None` when the spec has none) and, when
/// the spec records its digest, refuses a file with another one.
pub fn read_template(model: &ModelSpec) -> Result<Option<TemplateFile>, TemplateFileError> {
    let Some(path) = &model.chat_template else {
        return Ok(None);
    };
    let read_error = |source| TemplateFileError::Read {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    // A FIFO or a device would block or never end: regular files only,
    // and no more than the cap.
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(TemplateFileError::NotAFile { path: path.clone() });
    }
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(TemplateFileError::NotAFile { path: path.clone() });
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &model.chat_template_sha256 {
        if *expected != sha256 {
            tracing::warn!(path = %path.display(), expected = %expected, found = %sha256,
                "chat template changed since the job was submitted");
            return Err(TemplateFileError::Changed {
                path: path.clone(),
                expected: expected.clone(),
            });
        }
    }
    let source =
        String::from_utf8(bytes).map_err(|_| TemplateFileError::NotText { path: path.clone() })?;
    Ok(Some(TemplateFile {
        template: TemplateOverride {
            path: path.clone(),
            source,
        },
        sha256,
    }))
}

/// What to do about a chat job whose model (`shown`) has no chat
/// template: the two ways out, and a template of one's own.
pub fn no_chat_template(shown: &str) -> String {
    format!(
        "the model {shown} has no chat template, so this job's chat messages cannot be turned \
         into a prompt. Add `[model.prompt_format]` to the job: left empty, it joins the \
         messages' contents with spaces (as LiteLLM does for base models); with role strings it \
         wraps each turn, e.g. `user = {{ pre = \"[INST] \", post = \" [/INST]\\n\" }}` (likewise \
         `system` and `assistant`, plus optional `bos` and `eos`). Or give the model a template: \
         `model.chat_template = \"template.jinja\"`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: serde_json::Value) -> ModelSpec {
        let mut value = serde_json::json!({"backend": "engine", "model": "m", "path": "m.gguf"});
        for (k, v) in fields.as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_template_is_read_with_its_digest_and_a_changed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.jinja");
        std::fs::write(&file, "{{ messages[0].content }}").unwrap();
        assert_eq!(read_template(&spec(serde_json::json!({}))).unwrap(), None);
        let read = read_template(&spec(serde_json::json!({"chat_template": file})))
            .unwrap()
            .unwrap();
        assert_eq!(read.template.source, "{{ messages[0].content }}");
        assert_eq!(
            read.sha256,
            hex::encode(Sha256::digest(b"{{ messages[0].content }}"))
        );
        let recorded = spec(serde_json::json!({
            "chat_template": file, "chat_template_sha256": read.sha256
        }));
        assert_eq!(read_template(&recorded).unwrap().unwrap(), read);
        std::fs::write(&file, "{{ messages[1].content }}").unwrap();
        let e = read_template(&recorded).unwrap_err().to_string();
        assert!(
            e.contains(&read.sha256) && e.contains("t.jinja") && e.contains("changed"),
            "{e}"
        );
        let gone = spec(serde_json::json!({"chat_template": dir.path().join("gone.jinja")}));
        let e = read_template(&gone).unwrap_err().to_string();
        assert!(
            e.contains("`model.chat_template`") && e.contains("gone.jinja"),
            "{e}"
        );
    }
}
