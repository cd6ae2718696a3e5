//! Loading and validating whole specs: errors name the file, line, field
//! and accepted values.

use std::path::{Path, PathBuf};

use super::*;

const GOOD: &str = r#"
name = "qa"

[model]
backend = "openai"
model = "m"
base_url = "http://localhost:8000/v1"

[dataset]
path = "data/questions.jsonl"

[task]
kind = "generate"
target = "{{ answer }}"

[[task.messages]]
role = "system"
content = "Be brief."

[[task.messages]]
role = "user"
content = "{{ question }}"

[task.fewshot]
path = "shots.jsonl"
k = 1

[[metrics]]
type = "exact_match"
normalize = ["strip"]
"#;

fn err(text: &str) -> String {
    JobSpec::from_toml_str(text, "job.toml", None)
        .expect_err("spec should be rejected")
        .to_string()
}

#[test]
fn good_spec_loads_and_resolves_paths() {
    let spec = JobSpec::from_toml_str(GOOD, "job.toml", Some(Path::new("/jobs/qa"))).unwrap();
    assert_eq!(
        spec.dataset.path,
        PathBuf::from("/jobs/qa/data/questions.jsonl")
    );
    assert_eq!(
        spec.task.fewshot.as_ref().unwrap().path,
        PathBuf::from("/jobs/qa/shots.jsonl")
    );
    assert_eq!(spec.task.generation.max_tokens, 256);
}

#[test]
fn from_file_resolves_against_the_file_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.toml");
    std::fs::write(&path, GOOD).unwrap();
    let spec = JobSpec::from_toml_file(&path).unwrap();
    assert_eq!(spec.dataset.path, dir.path().join("data/questions.jsonl"));
    let missing = JobSpec::from_toml_file(&dir.path().join("nope.toml")).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("nope.toml: cannot read job spec"),
        "{missing}"
    );
}

#[test]
fn unknown_field_names_path_line_and_accepted_fields() {
    let text = GOOD.replace("model = \"m\"", "model = \"m\"\nbakend_url = \"x\"");
    let e = err(&text);
    assert!(e.starts_with("job.toml:7:1: `model"), "{e}");
    assert!(e.contains("unknown field `bakend_url`"), "{e}");
    assert!(e.contains("`base_url`"), "{e}");
}

#[test]
fn wrong_enum_value_lists_accepted_values() {
    let e = err(&GOOD.replace("backend = \"openai\"", "backend = \"openia\""));
    assert!(e.starts_with("job.toml:5:11: `model.backend`: "), "{e}");
    assert!(e.contains("unknown variant `openia`"), "{e}");
    assert!(e.contains("`openai`") && e.contains("`none`"), "{e}");
    let e = err(&GOOD.replace("normalize = [\"strip\"]", "normalize = [\"trim\"]"));
    assert!(
        e.contains("`metrics[0].normalize[0]`") || e.contains("`metrics.0.normalize.0`"),
        "{e}"
    );
    assert!(e.contains("remove_articles"), "{e}");
}

#[test]
fn missing_field_is_named() {
    let e = err(&GOOD.replace("model = \"m\"\n", ""));
    assert!(e.contains("`model`: missing field `model`"), "{e}");
    let e = err(&GOOD.replace("kind = \"generate\"\n", ""));
    assert!(e.contains("missing field `kind`"), "{e}");
}

#[test]
fn bad_template_names_the_template_and_line() {
    let e = err(&GOOD.replace(
        "content = \"{{ question }}\"",
        "content = \"{{ question }\"",
    ));
    assert!(
        e.contains("`task.messages[1].content`: template does not compile"),
        "{e}"
    );
    assert!(e.starts_with("job.toml:22:11:"), "{e}");
    let e = err(&GOOD.replace("target = \"{{ answer }}\"", "target = \"{% if %}\""));
    assert!(
        e.contains("`task.target`: template does not compile"),
        "{e}"
    );
}

#[test]
fn bad_regex_and_missing_group() {
    let with_regex = |p: &str| {
        GOOD.replace(
            "type = \"exact_match\"",
            &format!("type = \"regex\"\npattern = '{p}'"),
        )
    };
    let e = err(&with_regex("answer is ("));
    assert!(
        e.contains("`metrics[0].pattern`: is not a valid regex"),
        "{e}"
    );
    assert!(e.starts_with("job.toml:30:11:"), "{e}");
    let e = err(&with_regex("answer is \\w+"));
    assert!(e.contains("needs a capture group"), "{e}");
    assert!(JobSpec::from_toml_str(&with_regex("answer is (\\w+)"), "job.toml", None).is_ok());
    let e = err(&GOOD.replace("type = \"exact_match\"", "type = \"regex\""));
    assert!(
        e.contains("`metrics[0].pattern`: a `regex` metric needs `pattern`"),
        "{e}"
    );
}

#[test]
fn semantic_rules() {
    let e = err(&GOOD.replace("type = \"exact_match\"", "type = \"acc\""));
    assert!(e.contains("`metrics[0].type`: `acc` does not apply"), "{e}");
    let e = err(&GOOD.replace("base_url = \"http://localhost:8000/v1\"\n", ""));
    assert!(
        e.contains("`model.base_url`") && e.contains("base_url_env"),
        "{e}"
    );
    let e = err(&GOOD.replace("name = \"qa\"", "name = \"../qa\""));
    assert!(e.contains("`name`") && e.contains("folder name"), "{e}");
    let e = err(&GOOD.replace("name = \"qa\"", "name = \"\""));
    assert!(e.contains("`name`: must not be empty"), "{e}");
    let e = err(&format!("{GOOD}\n[[metrics]]\ntype = \"exact_match\"\n"));
    assert!(
        e.contains("`metrics[1].name`") && e.contains("already defined"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[sharding]\nshard_size = 0\n"));
    assert!(
        e.contains("`sharding.shard_size`: must be at least 1"),
        "{e}"
    );
    let e = err(&GOOD.replace("kind = \"generate\"", "kind = \"generate\"\nprompt = \"x\""));
    assert!(e.contains("not both"), "{e}");
    let e = err(&format!("{GOOD}\n[task.generation]\ntemperature = 3.0\n"));
    assert!(e.contains("`task.generation.temperature`"), "{e}");
    let e = err(&format!("{GOOD}\n[task.generation]\ntop_p = 0.0\n"));
    assert!(e.contains("`task.generation.top_p`"), "{e}");
    let e = err(&format!("{GOOD}\n[task.generation]\nn = 0\n"));
    assert!(e.contains("`task.generation.n`"), "{e}");
    let e = err(&format!(
        "{GOOD}\n[task.generation.extra_body]\nmodel = \"other\"\n"
    ));
    assert!(e.contains("`task.generation.extra_body.model`"), "{e}");
}

#[test]
fn multiple_choice_on_chat_is_explained() {
    let text = r#"
name = "mc"
[model]
backend = "openai"
model = "m"
base_url = "http://x/v1"
[dataset]
path = "d.jsonl"
[task]
kind = "multiple_choice"
prompt = "{{ q }}"
choices = "options"
target = "{{ answer }}"
[[metrics]]
type = "acc"
"#;
    let e = err(text);
    assert!(e.contains("`model.endpoint`"), "{e}");
    assert!(
        e.contains("endpoint = \\\"completions\\\"") || e.contains("endpoint = \"completions\""),
        "{e}"
    );
    assert!(e.contains("log-likelihood"), "{e}");
    let ok = text.replace(
        "base_url = \"http://x/v1\"",
        "base_url = \"http://x/v1\"\nendpoint = \"completions\"",
    );
    JobSpec::from_toml_str(&ok, "job.toml", None).unwrap();
    let e = err(&ok.replace("choices = \"options\"\n", ""));
    assert!(e.contains("`task.choices`"), "{e}");
    let e = err(&ok.replace("choices = \"options\"", "choices = \"options[\""));
    assert!(
        e.contains("`task.choices`: is not a valid expression"),
        "{e}"
    );
}

/// Found by the `plan` fuzz target: a `}}` in `choices` made the loader
/// panic inside minijinja ("empty lexer stack"); now a located error.
#[test]
fn choices_ending_early_are_refused_not_a_panic() {
    let text = r#"
name = "mc"
[model]
backend = "openai"
model = "m"
base_url = "http://x/v1"
endpoint = "completions"
[dataset]
path = "d.jsonl"
[task]
kind = "multiple_choice"
prompt = "{{ q }}"
choices = "}}tions"
target = "{{ answer }}"
"#;
    let e = err(text);
    assert!(e.contains("job.toml:13:"), "{e}");
    assert!(
        e.contains("`task.choices`: is not a valid expression"),
        "{e}"
    );
    assert!(e.contains("ends the expression early"), "{e}");
}

#[test]
fn json_spec_validates_without_origin_file() {
    let spec = JobSpec::from_toml_str(GOOD, "job.toml", None).unwrap();
    let mut bad = spec.clone();
    bad.model.concurrency = 0;
    let e = bad.validate().unwrap_err();
    assert_eq!(e.field(), Some("model.concurrency"));
    assert_eq!(
        e.to_string(),
        "job spec: `model.concurrency`: must be at least 1"
    );
}

const ENGINE: &str = r#"
name = "local"

[model]
backend = "engine"
model = "smollm2"
path = "models/smollm2.gguf"
device = "cpu"

[model.engine]
max_num_seqs = 8
kv_cache_memory = "256MiB"

[dataset]
path = "d.jsonl"

[task]
kind = "generate"
prompt = "{{ q }}"
"#;

#[test]
fn engine_spec_needs_a_fingerprint_only_once_submitted() {
    let spec = JobSpec::from_toml_str(ENGINE, "job.toml", Some(Path::new("/jobs/local"))).unwrap();
    assert_eq!(
        spec.model.path.as_deref(),
        Some(Path::new("/jobs/local/models/smollm2.gguf"))
    );
    let engine = spec.model.engine.clone().unwrap();
    assert_eq!(
        engine.kv_cache_memory,
        Some(crate::spec::ByteSize(256 << 20))
    );
    assert_eq!(engine.max_num_seqs, Some(8));
    // What the API gets without a fingerprint is refused, saying how to
    // get one.
    let e = spec.validate().unwrap_err();
    assert_eq!(e.field(), Some("model.fingerprint"));
    assert!(e.to_string().contains("shardline run"), "{e}");
    let mut done = spec.clone();
    done.model.fingerprint = Some("ab".repeat(32));
    done.validate().unwrap();
    assert_eq!(
        done.model.fingerprint().0,
        format!("engine:{}", "ab".repeat(32))
    );
    done.model.cache_namespace = Some("mine".into());
    assert_eq!(done.model.fingerprint().0, "ns:mine");
    // JSON round trip (what `submit` posts) keeps every engine field.
    let back: JobSpec = serde_json::from_str(&serde_json::to_string(&done).unwrap()).unwrap();
    assert_eq!(back, done);
    // `none` keeps the engine identity for cache-only scoring.
    let mut none = done.clone();
    none.model.backend = BackendKind::None;
    none.model.cache_namespace = None;
    none.validate().unwrap();
    assert_eq!(
        none.model.fingerprint().0,
        format!("engine:{}", "ab".repeat(32))
    );
}

#[test]
fn engine_fields_are_checked_with_line_and_accepted_values() {
    let e = err(&ENGINE.replace("device = \"cpu\"", "device = \"gpu\""));
    assert!(
        e.contains("job.toml:8:") && e.contains("`model.device`"),
        "{e}"
    );
    assert!(e.contains("\"cpu\", \"cuda\" or \"cuda:N\""), "{e}");
    let ok = JobSpec::from_toml_str(
        &ENGINE.replace("device = \"cpu\"", "device = \"cuda:1\""),
        "job.toml",
        None,
    )
    .unwrap();
    assert_eq!(
        ok.model.device,
        Some(crate::spec::DeviceSpec::Cuda { ordinal: 1 })
    );
    let e = err(&ENGINE.replace("\"256MiB\"", "\"2 parsecs\""));
    assert!(
        e.contains("`model.engine.kv_cache_memory`") && e.contains("MiB"),
        "{e}"
    );
    let e = err(&ENGINE.replace("path = \"models/smollm2.gguf\"\n", ""));
    assert!(e.contains("`model.path`") && e.contains("path_env"), "{e}");
    let e = err(&ENGINE.replace("device = \"cpu\"", "base_url = \"http://x/v1\""));
    assert!(
        e.contains("`model.base_url`") && e.contains("engine"),
        "{e}"
    );
    let e = err(&ENGINE.replace("max_num_seqs = 8", "max_num_seqs = 0"));
    assert!(
        e.contains("job.toml:11:") && e.contains("`model.engine.max_num_seqs`"),
        "{e}"
    );
    let e = err(&ENGINE.replace("max_num_seqs = 8", "max_num_sequences = 8"));
    assert!(e.contains("max_num_sequences"), "{e}");
    let e = err(&format!(
        "{ENGINE}\n[task.generation]\nextra_body = {{ repetition_penalty = 1.1 }}\n"
    ));
    assert!(
        e.contains("`task.generation.extra_body.repetition_penalty`")
            && e.contains("top_k, ignore_eos, stop_token_ids"),
        "{e}"
    );
    let e = err(&ENGINE.replace("device = \"cpu\"", "fingerprint = \"sha256:abc\""));
    assert!(
        e.contains("`model.fingerprint`") && e.contains("64 lowercase hex"),
        "{e}"
    );
    // Engine fields on an endpoint backend are refused.
    let e = err(&GOOD.replace(
        "base_url = \"http://localhost:8000/v1\"",
        "base_url = \"http://localhost:8000/v1\"\npath = \"m.gguf\"",
    ));
    assert!(
        e.contains("`model.path`") && e.contains("applies only to"),
        "{e}"
    );
}

#[test]
fn path_default_goes_with_path_env_and_keeps_a_home_prefix() {
    let with_env = ENGINE.replace(
        "path = \"models/smollm2.gguf\"",
        "path_env = \"MY_MODEL\"\npath_default = \"~/.cache/m.gguf\"",
    );
    let spec = JobSpec::from_toml_str(&with_env, "job.toml", Some(Path::new("/jobs/qa"))).unwrap();
    // Expanded by the machine that loads the model, not here.
    assert_eq!(
        spec.model.path_default.as_deref(),
        Some(Path::new("~/.cache/m.gguf"))
    );
    let relative = with_env.replace("~/.cache/m.gguf", "models/m.gguf");
    let spec = JobSpec::from_toml_str(&relative, "job.toml", Some(Path::new("/jobs/qa"))).unwrap();
    assert_eq!(
        spec.model.path_default.as_deref(),
        Some(Path::new("/jobs/qa/models/m.gguf"))
    );
    let e = err(&ENGINE.replace(
        "device = \"cpu\"",
        "device = \"cpu\"\npath_default = \"m.gguf\"",
    ));
    assert!(
        e.contains("`model.path_default`") && e.contains("path_env"),
        "{e}"
    );
    let e = err(&with_env.replace("~/.cache/m.gguf", ""));
    assert!(
        e.contains("`model.path_default`") && e.contains("empty"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "base_url = \"http://localhost:8000/v1\"",
        "base_url = \"http://localhost:8000/v1\"\npath_default = \"m.gguf\"",
    ));
    assert!(
        e.contains("`model.path_default`") && e.contains("applies only to"),
        "{e}"
    );
}
