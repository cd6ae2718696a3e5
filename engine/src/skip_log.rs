//! Skipped tests, said out loud: a test that cannot check anything here (no
//! GPU, no NVRTC) records why, on its own output and, when
//! `SHARDLINE_SKIP_LOG` names a file, as one line of that file, which
//! scripts/test.sh prints after the run (captured test output is hidden
//! when a test passes, so a skip would otherwise look like a pass).

use std::io::Write;
use std::path::Path;

/// The variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "SHARDLINE_SKIP_LOG";

/// Records that `test` skipped because of `reason`.
pub fn skip(test: &str, reason: &str) {
    let log = std::env::var_os(SKIP_LOG_ENV);
    skip_to(log.as_deref().map(Path::new), test, reason);
}

/// [`skip`] with the log file given.
pub fn skip_to(log: Option<&Path>, test: &str, reason: &str) {
    let line = format!(
        "{test}: {}",
        reason.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!("SKIPPED {line}");
    let Some(log) = log else {
        return;
    };
    // One short append per line: concurrent tests' lines do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        println!("cannot record the skip in {}: {e}", log.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_appended_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        skip_to(Some(&log), "a::one", "no usable GPU:\n  driver not found");
        skip_to(Some(&log), "a::two", "NVRTC not found");
        skip_to(None, "a::three", "not recorded");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a::one: no usable GPU: driver not found\na::two: NVRTC not found\n"
        );
    }
}
