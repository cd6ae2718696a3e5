//! How chat messages become the model's text: `model.chat_template` (a
//! template file replacing an engine model's own) and
//! `[model.prompt_format]` (role strings, for models without a template).

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::model::{is_fingerprint, BackendKind, Endpoint};
use super::super::task::TaskKind;

impl JobSpec {
    pub(super) fn validate_model_templates(&self, submitted: bool) -> Result<(), SpecError> {
        self.validate_chat_template(submitted)?;
        self.validate_prompt_format()
    }

    fn validate_chat_template(&self, submitted: bool) -> Result<(), SpecError> {
        let m = &self.model;
        let engine_like = matches!(m.backend, BackendKind::Engine | BackendKind::None);
        if let Some(path) = &m.chat_template {
            if !engine_like {
                return Err(SpecError::invalid(
                    "model.chat_template",
                    format!(
                        "applies only to `backend = \"engine\"` (this job uses `{}`, whose server \
                         applies its own template: set it there, e.g. vLLM's --chat-template); \
                         remove it or change the backend",
                        m.backend.as_str()
                    ),
                ));
            }
            if path.as_os_str().is_empty() {
                return Err(SpecError::invalid(
                    "model.chat_template",
                    "must not be empty when set: give the path of a Jinja chat template file",
                ));
            }
        }
        match (&m.chat_template, &m.chat_template_sha256) {
            (None, Some(_)) => Err(SpecError::invalid(
                "model.chat_template_sha256",
                "is the digest of `model.chat_template`, which is not set; remove it",
            )),
            (Some(_), Some(digest)) if !is_fingerprint(digest) => Err(SpecError::invalid(
                "model.chat_template_sha256",
                format!(
                    "{digest:?} is not a sha256 (64 lowercase hex characters); remove it to have \
                     it computed from the file"
                ),
            )),
            (Some(_), None) if submitted && m.backend == BackendKind::Engine => {
                Err(SpecError::invalid(
                    "model.chat_template_sha256",
                    "is missing: the chat template is part of the model's identity in request \
                     keys. `shardline run` and `shardline submit` compute it from the file; a \
                     spec posted to the API directly must include it (64 hex characters)",
                ))
            }
            _ => Ok(()),
        }
    }

    fn validate_prompt_format(&self) -> Result<(), SpecError> {
        let m = &self.model;
        let Some(format) = &m.prompt_format else {
            return Ok(());
        };
        const FIELD: &str = "model.prompt_format";
        if m.chat_template.is_some() {
            return Err(SpecError::invalid(
                FIELD,
                "and `model.chat_template` both say how messages become a prompt; keep one",
            ));
        }
        if matches!(m.backend, BackendKind::Openai | BackendKind::OpenaiBatch)
            && m.endpoint == Endpoint::Chat
        {
            return Err(SpecError::invalid(
                FIELD,
                "formats messages into one prompt for `/v1/completions`, but this model uses \
                 `endpoint = \"chat\"`, where the server applies its own chat template: set \
                 `endpoint = \"completions\"`, or remove the prompt_format",
            ));
        }
        if self.task.kind == TaskKind::MultipleChoice {
            return Err(SpecError::invalid(
                FIELD,
                "applies to chat messages, and a `multiple_choice` task scores a plain \
                 `task.prompt`; remove it",
            ));
        }
        if self.task.messages.is_none() && m.endpoint == Endpoint::Completions {
            return Err(SpecError::invalid(
                FIELD,
                "has nothing to format: on `endpoint = \"completions\"` the `task.prompt` is \
                 sent as is; use `task.messages` to have it formatted, or remove it",
            ));
        }
        for (role, strings) in [
            ("system", &format.system),
            ("user", &format.user),
            ("assistant", &format.assistant),
        ] {
            if strings
                .as_ref()
                .is_some_and(|s| s.pre.is_none() && s.post.is_none())
            {
                return Err(SpecError::invalid(
                    format!("{FIELD}.{role}"),
                    "needs `pre`, `post` or both, e.g. { pre = \"### Question:\\n\", post = \
                     \"\\n\" }",
                ));
            }
        }
        if !format.has_roles() {
            if let Some((name, _)) = format.framing().into_iter().find(|(_, v)| v.is_some()) {
                return Err(SpecError::invalid(
                    format!("{FIELD}.{name}"),
                    "goes with role strings (`system`, `user`, `assistant`, each { pre, post }); \
                     without them the messages' contents are joined with a space, as LiteLLM \
                     does for base models. Add the roles or remove it",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::JobSpec;

    const BASE: &str = r#"
name = "t"
[model]
backend = "engine"
model = "base"
path = "m.gguf"
fingerprint = "0000000000000000000000000000000000000000000000000000000000000000"
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
target = "{{ a }}"
[[task.messages]]
role = "user"
content = "{{ q }}"
[[metrics]]
type = "exact_match"
"#;

    /// `extra` added to `[model]`, `tail` after everything; the error's
    /// field and message, or `None` when valid.
    fn check(extra: &str, tail: &str) -> Option<(String, String)> {
        let text = BASE.replace(
            "path = \"m.gguf\"\n",
            &format!("path = \"m.gguf\"\n{extra}\n"),
        ) + tail;
        match JobSpec::from_toml_str(&text, "job.toml", None).and_then(|s| {
            s.validate()?;
            Ok(s)
        }) {
            Ok(_) => None,
            Err(e) => Some((e.field().unwrap_or_default().to_string(), e.to_string())),
        }
    }

    #[test]
    fn prompt_formats_are_checked_and_errors_name_the_field() {
        assert_eq!(check("", "[model.prompt_format]\n"), None);
        let roles = "[model.prompt_format]\nbos = \"<s>\"\nuser = { pre = \"[INST] \", post = \
                     \" [/INST]\" }\n";
        assert_eq!(check("", roles), None);
        let (field, _) = check("", "[model.prompt_format]\nuser = { pre = 3 }\n").unwrap();
        assert_eq!(field, "model.prompt_format.user.pre");
        let (field, _) = check("", "[model.prompt_format]\nuser = {}\n").unwrap();
        assert_eq!(field, "model.prompt_format.user");
        let (field, message) = check("", "[model.prompt_format]\neos = \"</s>\"\n").unwrap();
        assert_eq!(field, "model.prompt_format.eos");
        assert!(message.contains("joined with a space"), "{message}");
        let (field, _) = check("chat_template = \"t.jinja\"", "[model.prompt_format]\n").unwrap();
        assert_eq!(field, "model.prompt_format");
    }

    #[test]
    fn chat_templates_belong_to_the_engine_and_carry_their_digest() {
        let (field, message) = check("chat_template = \"t.jinja\"", "").unwrap();
        assert_eq!(field, "model.chat_template_sha256");
        assert!(message.contains("shardline run"), "{message}");
        let digest = format!("chat_template_sha256 = \"{}\"", "a".repeat(64));
        assert_eq!(
            check(&format!("chat_template = \"t.jinja\"\n{digest}"), ""),
            None
        );
        let (field, _) = check(&digest, "").unwrap();
        assert_eq!(field, "model.chat_template_sha256");
        let (field, _) = check(
            "chat_template = \"t.jinja\"\nchat_template_sha256 = \"x\"",
            "",
        )
        .unwrap();
        assert_eq!(field, "model.chat_template_sha256");
    }

    #[test]
    fn api_models_take_a_prompt_format_on_the_completions_endpoint_only() {
        let api = |endpoint: &str, task: &str| {
            let text =
                BASE.replace(
                    "backend = \"engine\"",
                    &format!("backend = \"openai\"\nbase_url = \"http://x/v1\"\n{endpoint}"),
                )
                .replace("path = \"m.gguf\"\n", "")
                .replace(&format!("fingerprint = \"{}\"\n", "0".repeat(64)), "")
                .replace(
                    "[[task.messages]]\nrole = \"user\"\ncontent = \"{{ q }}\"\n",
                    task,
                ) + "[model.prompt_format]\n";
            JobSpec::from_toml_str(&text, "job.toml", None)
                .err()
                .map(|e| e.field().unwrap_or_default().to_string())
        };
        let messages = "[[task.messages]]\nrole = \"user\"\ncontent = \"{{ q }}\"\n";
        assert_eq!(api("endpoint = \"completions\"", messages), None);
        assert_eq!(api("", messages).as_deref(), Some("model.prompt_format"));
        let prompt = "prompt = \"{{ q }}\"\n";
        assert_eq!(
            api("endpoint = \"completions\"", prompt).as_deref(),
            Some("model.prompt_format")
        );
    }

    #[test]
    fn the_template_digest_is_part_of_the_model_identity() {
        let fingerprint = |extra: &str| {
            let text = BASE.replace(
                "path = \"m.gguf\"\n",
                &format!("path = \"m.gguf\"\n{extra}\n"),
            );
            JobSpec::from_toml_str(&text, "job.toml", None)
                .unwrap()
                .model
                .fingerprint()
                .0
        };
        let own = fingerprint("");
        assert_eq!(own, format!("engine:{}", "0".repeat(64)));
        let a = fingerprint(&format!(
            "chat_template = \"t.jinja\"\nchat_template_sha256 = \"{}\"",
            "a".repeat(64)
        ));
        let b = fingerprint(&format!(
            "chat_template = \"t.jinja\"\nchat_template_sha256 = \"{}\"",
            "b".repeat(64)
        ));
        assert_eq!(a, format!("{own}+chat_template:{}", "a".repeat(64)));
        assert_ne!(a, b);
        // A cache namespace keeps the template in the identity too.
        let named = |sha: &str| {
            fingerprint(&format!(
                "cache_namespace = \"llama\"\nchat_template = \"t.jinja\"\nchat_template_sha256 = \"{}\"",
                sha.repeat(64)
            ))
        };
        assert_ne!(named("a"), named("b"));
        assert_eq!(fingerprint("cache_namespace = \"llama\""), "ns:llama");
    }
}
