//! Arbitrary bytes as the body of `POST /v1/jobs` (and, with the same spec,
//! `/v1/rescore`): parsed as `SubmitJobRequest`, then validated as the
//! coordinator does before storing a job. Any panic is a bug: every bad body
//! must be a parse error or a `SpecError`.
#![no_main]

use jobs::protocol::SubmitJobRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<SubmitJobRequest>(data) else {
        return;
    };
    let _ = req.spec.validate();
    let _ = req.spec.validate_as_written();
    let _ = req.spec.model.fingerprint();
});
