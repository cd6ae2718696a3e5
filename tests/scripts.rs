//! The README's two commands as a newcomer meets them: `scripts/quickstart.sh
//! --help` is the script's own help, and the quickstart announces the wait
//! before it builds, builds with the test suite's command (one build for
//! both), and ends by saying where the binary is and how to call the next
//! commands from a plain shell. `cargo` and the built binary are stand-ins
//! here (scripts on the PATH), so nothing is compiled.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `cargo` that records its arguments in `$FAKE_LOG`, says so on stderr
/// and "builds" a `shardline` that records its own arguments.
fn fake_cargo(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    executable(
        &bin.join("cargo"),
        r#"#!/usr/bin/env bash
echo "cargo $*" >> "$FAKE_LOG"
echo "FAKE CARGO RUNS" >&2
mkdir -p "$CARGO_TARGET_DIR/debug"
cat > "$CARGO_TARGET_DIR/debug/shardline" <<'BIN'
#!/usr/bin/env bash
echo "shardline $*" >> "$FAKE_LOG"
BIN
chmod +x "$CARGO_TARGET_DIR/debug/shardline"
"#,
    );
    bin
}

fn quickstart(dir: &Path, args: &[&str], models: &Path) -> Output {
    let bin = fake_cargo(dir);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(repo().join("scripts/quickstart.sh"))
        .args(args)
        .env("PATH", path)
        .env("FAKE_LOG", dir.join("log"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("SHARDLINE_MODELS_DIR", models)
        .output()
        .expect("bash runs")
}

#[test]
fn quickstart_help_is_its_own_and_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = quickstart(dir.path(), &["--help"], &dir.path().join("models"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", support::describe(&out));
    assert!(text.starts_with("Usage: scripts/quickstart.sh"), "{text}");
    for needle in ["--openai", "--limit 10", "9 minutes", "latest"] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    assert!(
        !dir.path().join("log").exists(),
        "--help ran cargo or shardline"
    );
}

#[test]
fn quickstart_announces_the_build_shares_it_and_says_what_next() {
    let Some(model) = std::env::var_os("SHARDLINE_SMOLLM2_GGUF").map(PathBuf::from) else {
        support::skip(
            "scripts::quickstart_announces_the_build_shares_it_and_says_what_next",
            "SHARDLINE_SMOLLM2_GGUF does not name the SmolLM2 GGUF file (scripts/test.sh sets it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = quickstart(dir.path(), &["--limit", "2"], model.parent().unwrap());
    assert!(out.status.success(), "{}", support::describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let notice = err
        .find("first build")
        .expect("no notice of the first build");
    let build = err.find("FAKE CARGO RUNS").expect("cargo did not run");
    assert!(
        notice < build,
        "the wait was announced after it began:\n{err}"
    );
    assert!(err.contains("9 minutes"), "{err}");

    // The one build command, which scripts/test.sh runs too (scripts/build.sh).
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "cargo build --locked --workspace --bins", "{log}");
    let test_sh = std::fs::read_to_string(repo().join("scripts/test.sh")).unwrap();
    assert!(test_sh.contains("\nscripts/build.sh\n"), "{test_sh}");
    assert!(lines[1].starts_with("shardline run jobs/examples/quickstart-local/qa.toml --limit 2"));
    assert!(lines[2].starts_with("shardline run jobs/examples/quickstart-local/mc.toml --limit 2"));

    // Where the binary is, how to call it, and the model's variable.
    let bin = dir.path().join("target/debug/shardline");
    assert!(
        err.contains(&format!("The shardline binary is {}", bin.display())),
        "{err}"
    );
    assert!(err.contains("alias shardline="), "{err}");
    assert!(
        err.contains(&format!(
            "export SHARDLINE_SMOLLM2_GGUF=\"{}\"",
            model.display()
        )),
        "{err}"
    );
    assert!(err.contains("shardline status --home .shardline"), "{err}");

    // A second run finds the build and says it is incremental.
    let out = quickstart(dir.path(), &["--limit", "2"], model.parent().unwrap());
    assert!(out.status.success(), "{}", support::describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("first build"), "{err}");
    assert!(err.contains("rebuilding what changed"), "{err}");
}
