//! Arbitrary bytes as a TOML job file, through what `shardline run` and
//! `submit` do with one (`JobSpec::from_toml_file`, then `validate`), and
//! the loaded spec through the JSON a submission posts. Any panic is a bug:
//! every bad file must be a `SpecError`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use jobs::JobSpec;
use libfuzzer_sys::fuzz_target;

fn job_file() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        DIR.get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("job.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = job_file();
    std::fs::write(path, data).unwrap();
    let Ok(spec) = JobSpec::from_toml_file(path) else {
        return;
    };
    let _ = spec.validate();
    let _ = spec.model.fingerprint();
    // A loaded spec is posted as JSON; the coordinator parses it back.
    if let Ok(json) = serde_json::to_vec(&spec) {
        if let Ok(back) = serde_json::from_slice::<JobSpec>(&json) {
            let _ = back.validate();
        }
    }
});
