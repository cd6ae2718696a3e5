//! One build for the quickstart and the tests: `scripts/build.sh` (the
//! quickstart's and scripts/test.sh's build) compiles the dependencies
//! with the features that `cargo test --workspace` resolves, so the tests
//! compile only what they add (their own code and test support, new
//! crates such as tempfile) instead of tokio, hyper, gemm, the engine and
//! everything above them a second time. A dev-dependency that turns on a
//! feature of a shared dependency breaks that; this test names it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Workspace crates whose `test-support` feature only tests turn on: they
/// (and the crates above them) are compiled again for the tests, by design.
const TEST_SUPPORT: &[&str] = &["cache", "coordinator"];

/// Package (`name vX.Y.Z`) → the feature sets it is resolved with.
fn resolved(extra: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--workspace",
            "--locked",
            "--offline",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}|{f}"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // `name vX.Y.Z (path)` for workspace crates; `(*)` marks a repeat.
        let mut words = package.split_whitespace();
        let id = format!(
            "{} {}",
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default()
        );
        let features = features.trim_end_matches("(*)").trim().to_string();
        packages.entry(id).or_default().insert(features);
    }
    packages
}

#[test]
fn the_tests_resolve_the_same_features_as_the_build() {
    let build = resolved(&["--edges", "no-dev"]);
    let tests = resolved(&[]);
    let mut differ = Vec::new();
    for (package, features) in &tests {
        let name = package.split_whitespace().next().unwrap_or_default();
        if TEST_SUPPORT.contains(&name) {
            continue;
        }
        match build.get(package) {
            // Only the tests use it: compiled once, for them.
            None => {}
            Some(built) if built == features => {}
            Some(built) => differ.push(format!(
                "{package}: built with {built:?}, tested with {features:?}"
            )),
        }
    }
    assert!(
        differ.is_empty(),
        "dev-dependencies turn on features the build does not, so `cargo test` would compile \
         these (and every crate above them) again; turn the features on for every build (see \
         the feature pins in Cargo.toml):\n{}",
        differ.join("\n")
    );
}
