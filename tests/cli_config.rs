//! The settings layering of the cluster commands, proved on the built
//! binary: flag > environment variable > config file > default. Each case
//! runs `shardline serve|worker --print-settings` in a cleared environment
//! and reads the resolved settings it prints as JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ADMIN_SECRET: &str = "admin-secret-value-1";
const WORKER_SECRET: &str = "worker-secret-value-2";

/// `shardline ARGS` with only `vars` (and the two tokens) in its environment.
fn shardline(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardline"));
    cmd.args(args)
        .env_clear()
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN_SECRET)
        .env("SHARDLINE_WORKER_TOKEN", WORKER_SECRET);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().expect("the shardline binary runs")
}

/// The settings printed by a successful `--print-settings` run.
fn settings(args: &[&str], vars: &[(&str, &str)]) -> serde_json::Value {
    let out = shardline(args, vars);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shardline {args:?} failed ({}): {stderr}",
        out.status
    );
    assert!(
        !stdout.contains(ADMIN_SECRET) && !stdout.contains(WORKER_SECRET),
        "a token's value was printed: {stdout}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("shardline.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

#[test]
fn serve_takes_the_flag_then_the_variable_then_the_file_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        r#"
[serve]
lease_secs = 30
database_url = "postgres://file@h/db"
listen = "10.0.0.1:1"
cache = "s3://file-bucket/p"
[s3]
region = "eu-west-1"
force_path_style = true
"#,
    );
    let config = file.to_str().unwrap();
    let s = settings(
        &[
            "serve",
            "--print-settings",
            "--config",
            config,
            "--lease-secs",
            "9",
        ],
        &[
            ("SHARDLINE_LEASE_SECS", "20"),
            ("SHARDLINE_DATABASE_URL", "postgres://env:pa55word@h/db"),
            ("AWS_REGION", "us-west-2"),
        ],
    );
    assert_eq!(
        s["lease_secs"], 9,
        "the flag beats the variable and the file"
    );
    assert_eq!(s["heartbeat_secs"], 3, "a third of the lease");
    assert_eq!(
        s["database_url"], "postgres://env:***@h/db",
        "the variable beats the file; the password never shows"
    );
    assert_eq!(s["s3"]["region"], "us-west-2");
    assert_eq!(s["listen"], "10.0.0.1:1", "the file beats the default");
    assert_eq!(s["cache"], "s3://file-bucket/p");
    assert_eq!(s["s3"]["force_path_style"], true);
    assert_eq!(s["reaper_interval_ms"], 2000, "the default");
    assert_eq!(s["home"], ".shardline");
    assert_eq!(s["admin_token_env"], "SHARDLINE_ADMIN_TOKEN");
    assert_eq!(s["worker_token_env"], "SHARDLINE_WORKER_TOKEN");

    let bare = settings(&["serve", "--print-settings"], &[]);
    assert_eq!(bare["listen"], "127.0.0.1:8700");
    assert_eq!(bare["lease_secs"], 60);
    assert_eq!(bare["heartbeat_secs"], 20);
    assert_eq!(bare["reaper_interval_ms"], 2000);
    assert_eq!(bare["database_url"], serde_json::Value::Null);
    assert_eq!(bare["s3"]["force_path_style"], false);
}

#[test]
fn worker_takes_the_flag_then_the_variable_then_the_file_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        r#"
[worker]
coordinator = "http://file:1"
cache = "s3://file-bucket/p"
backends = ["engine"]
models = ["file-model"]
poll_ms = 700
shards = 5
"#,
    );
    let config = file.to_str().unwrap();
    let s = settings(
        &[
            "worker",
            "--print-settings",
            "--config",
            config,
            "--model",
            "gpt-*",
            "--model",
            "m",
            "--shards",
            "2",
        ],
        &[
            ("SHARDLINE_MODELS", "env-model"),
            ("SHARDLINE_WORKER_SHARDS", "7"),
            ("SHARDLINE_BACKENDS", "openai, openai-batch"),
            ("SHARDLINE_COORDINATOR", "http://env:2"),
        ],
    );
    assert_eq!(s["models"], serde_json::json!(["gpt-*", "m"]), "flags win");
    assert_eq!(s["shards"], 2);
    assert_eq!(
        s["backends"],
        serde_json::json!(["openai", "openai-batch"]),
        "a comma-separated variable beats the file"
    );
    assert_eq!(s["coordinator"], "http://env:2");
    assert_eq!(
        s["cache"], "s3://file-bucket/p",
        "the file beats no default"
    );
    assert_eq!(s["poll_ms"], 700, "the file beats the default");
    assert_eq!(s["token_env"], "SHARDLINE_WORKER_TOKEN");

    let bare = settings(
        &["worker", "--print-settings", "--cache", "/tmp/cache"],
        &[],
    );
    assert_eq!(bare["coordinator"], "http://127.0.0.1:8700");
    assert_eq!(bare["backends"], serde_json::json!(["openai"]));
    assert_eq!(bare["models"], serde_json::json!([]));
    assert_eq!(bare["shards"], 0);
    assert_eq!(bare["poll_ms"], 2000);
}

#[test]
fn the_config_file_may_come_from_the_environment_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = config_file(dir.path(), "[serve]\nlisten = \"10.0.0.2:2\"\n");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[serve]\nlisten = \"10.0.0.3:3\"\n").unwrap();
    let vars = [("SHARDLINE_CONFIG", from_env.to_str().unwrap())];
    let s = settings(&["serve", "--print-settings"], &vars);
    assert_eq!(s["listen"], "10.0.0.2:2");
    let s = settings(
        &[
            "serve",
            "--print-settings",
            "--config",
            other.to_str().unwrap(),
        ],
        &vars,
    );
    assert_eq!(s["listen"], "10.0.0.3:3");
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[serve]\nlisten = \"10.0.0.1:1\"\n");
    let s = settings(
        &["serve", "--print-settings"],
        &[
            ("SHARDLINE_CONFIG", file.to_str().unwrap()),
            ("SHARDLINE_LISTEN", ""),
            ("SHARDLINE_LEASE_SECS", "  "),
            ("SHARDLINE_ADMIN_TOKEN_ENV", ""),
        ],
    );
    assert_eq!(
        s["listen"], "10.0.0.1:1",
        "the file, not the empty variable"
    );
    assert_eq!(s["lease_secs"], 60);
    assert_eq!(s["admin_token_env"], "SHARDLINE_ADMIN_TOKEN");
    let s = settings(
        &["serve", "--print-settings"],
        &[("SHARDLINE_CONFIG", ""), ("SHARDLINE_LEASE_SECS", " 20 ")],
    );
    assert_eq!(s["listen"], "127.0.0.1:8700", "no file");
    assert_eq!(s["lease_secs"], 20, "a variable's value is trimmed");
}

#[test]
fn tokens_are_read_from_the_named_variable_and_never_printed() {
    let s = settings(
        &["serve", "--print-settings", "--admin-token-env", "MY_ADMIN"],
        &[("MY_ADMIN", "my-admin-secret-value")],
    );
    assert_eq!(s["admin_token_env"], "MY_ADMIN");
    assert!(!s.to_string().contains("my-admin-secret-value"), "{s}");

    let out = shardline(
        &[
            "serve",
            "--print-settings",
            "--admin-token-env",
            "UNSET_VAR",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("UNSET_VAR") && stderr.contains("not set"),
        "{stderr}"
    );
}

#[test]
fn bad_values_exit_2_naming_where_they_came_from() {
    let out = shardline(
        &["serve", "--print-settings"],
        &[("SHARDLINE_LEASE_SECS", "soon")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable SHARDLINE_LEASE_SECS") && stderr.contains("\"soon\""),
        "{stderr}"
    );

    let out = shardline(&["serve", "--print-settings", "--lease-secs", "soon"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--lease-secs"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[serve]\nlease_secs = 6\nheartbeat_secs = 6\n");
    let out = shardline(
        &[
            "serve",
            "--print-settings",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("serve.heartbeat_secs"), "{stderr}");

    let out = shardline(
        &["worker", "--print-settings", "--cache", "/tmp/c"],
        &[("SHARDLINE_BACKENDS", "openai,nope")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SHARDLINE_BACKENDS") && stderr.contains("nope"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_short_tokens_and_an_admin_token_equal_to_the_worker_token() {
    let refused = |vars: &[(&str, &str)], expected: &str| {
        let out = shardline(&["serve", "--print-settings"], vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        // Values of a few characters may occur in the message by chance.
        for (_, value) in vars.iter().filter(|(_, v)| v.len() > 4) {
            assert!(
                !stderr.contains(value),
                "a token's value was printed: {stderr}"
            );
        }
    };
    refused(
        &[("SHARDLINE_ADMIN_TOKEN", "q7Zk9")],
        "admin token in environment variable SHARDLINE_ADMIN_TOKEN is too short (5 bytes); use at least 16",
    );
    refused(
        &[("SHARDLINE_WORKER_TOKEN", "x")],
        "worker token in environment variable SHARDLINE_WORKER_TOKEN is too short (1 bytes)",
    );
    refused(
        &[("SHARDLINE_WORKER_TOKEN", ADMIN_SECRET)],
        "is the same as the worker token",
    );
}

#[test]
fn worker_key_variables_are_layered_and_checked() {
    let base = ["worker", "--print-settings", "--cache", "/tmp/c"];
    let s = settings(&base, &[]);
    assert_eq!(
        s["allow_key_env"],
        serde_json::json!(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SHARDLINE_KEY_*"])
    );
    let s = settings(
        &base,
        &[
            ("SHARDLINE_ALLOW_KEY_ENV", "VLLM_KEY, TEAM_*"),
            ("VLLM_KEY", "k"),
        ],
    );
    assert_eq!(
        s["allow_key_env"],
        serde_json::json!(["VLLM_KEY", "TEAM_*"])
    );
    let mut flag = base.to_vec();
    flag.extend(["--allow-key-env", "ONLY_THIS"]);
    let s = settings(
        &flag,
        &[("SHARDLINE_ALLOW_KEY_ENV", "VLLM_KEY"), ("ONLY_THIS", "k")],
    );
    assert_eq!(s["allow_key_env"], serde_json::json!(["ONLY_THIS"]));

    // A name the operator gave that this worker lacks: said at start, exit
    // 2, with where the list came from (the defaults are never required).
    let out = shardline(&flag, &[("ONLY_THIS", " ")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--allow-key-env")
            && stderr.contains("ONLY_THIS as their API key, but it is not set"),
        "{stderr}"
    );
    let out = shardline(&base, &[("SHARDLINE_ALLOW_KEY_ENV", "A_KEY,B_KEY,C_*")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SHARDLINE_ALLOW_KEY_ENV")
            && stderr.contains("A_KEY, B_KEY as their API key, but they are not set"),
        "{stderr}"
    );

    let mut bad = base.to_vec();
    bad.extend(["--allow-key-env", "NOT A NAME"]);
    let out = shardline(&bad, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NOT A NAME"), "{stderr}");

    // Endpoints: any by default; a list from the flag or the variable.
    assert_eq!(
        settings(&base, &[])["allow_endpoints"],
        serde_json::Value::Null
    );
    let s = settings(
        &base,
        &[(
            "SHARDLINE_ALLOW_ENDPOINTS",
            "https://api.openai.com/v1, http://vllm:8000",
        )],
    );
    assert_eq!(
        s["allow_endpoints"],
        serde_json::json!(["https://api.openai.com/v1", "http://vllm:8000"])
    );
    let mut bad = base.to_vec();
    bad.extend(["--allow-endpoint", "ftp://files"]);
    let out = shardline(&bad, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ftp://files"), "{stderr}");
}

#[test]
fn serve_limits_come_from_the_flag_the_variable_or_the_default() {
    let s = settings(&["serve", "--print-settings"], &[]);
    assert_eq!(s["max_samples_per_doc"], 1000);
    assert_eq!(s["max_tokens"], 131072);
    let s = settings(
        &["serve", "--print-settings", "--max-tokens", "4096"],
        &[("SHARDLINE_MAX_SAMPLES_PER_DOC", "16")],
    );
    assert_eq!(s["max_samples_per_doc"], 16);
    assert_eq!(s["max_tokens"], 4096);
    let out = shardline(&["serve", "--print-settings", "--max-tokens", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_dataset_roots_and_read_limits_are_settings() {
    let s = settings(&["serve", "--print-settings"], &[]);
    assert_eq!(s["dataset_roots"], serde_json::json!([]), "none by default");
    assert_eq!(s["max_docs_per_job"], 10_000_000);
    assert_eq!(s["max_line_bytes"], 16 * 1024 * 1024);
    assert_eq!(s["max_spec_bytes"], 1024 * 1024);
    assert_eq!(s["max_shard_size"], 10_000);

    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap().display().to_string();
    let s = settings(
        &[
            "serve",
            "--print-settings",
            "--dataset-root",
            a.path().to_str().unwrap(),
            "--dataset-root",
            "s3://evals/data",
            "--max-docs-per-job",
            "500",
        ],
        &[],
    );
    assert_eq!(
        s["dataset_roots"],
        serde_json::json!([real(a.path()), "s3://evals/data/"])
    );
    assert_eq!(s["max_docs_per_job"], 500);
    // The variable is a comma-separated list.
    let both = format!("{},{}", a.path().display(), b.path().display());
    let s = settings(
        &["serve", "--print-settings"],
        &[("SHARDLINE_DATASET_ROOTS", &both)],
    );
    assert_eq!(
        s["dataset_roots"],
        serde_json::json!([real(a.path()), real(b.path())])
    );
    // A root that does not exist is a configuration error naming it.
    let out = shardline(
        &[
            "serve",
            "--print-settings",
            "--dataset-root",
            "/nonexistent/roots",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/roots"), "{stderr}");
}
