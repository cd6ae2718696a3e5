//! The paths of every HTTP route the coordinator serves, defined once for
//! the server's router and for its clients.
//!
//! Constants are the router's patterns (`{id}` marks a path parameter);
//! the `*_of` functions build the path a client sends for one job.

use uuid::Uuid;

// ---- job API (admin token) ----

/// `POST` submits a job, `GET` lists jobs.
pub const JOBS: &str = "/v1/jobs";
/// `GET` one job's status.
pub const JOB: &str = "/v1/jobs/{id}";
/// `POST` cancels a job.
pub const JOB_CANCEL: &str = "/v1/jobs/{id}/cancel";
/// `GET` a job's `metrics.json`.
pub const JOB_RESULTS: &str = "/v1/jobs/{id}/results";
/// `GET` a job's `samples.jsonl`, streamed.
pub const JOB_SAMPLES: &str = "/v1/jobs/{id}/samples";
/// `GET` a job's failed requests.
pub const JOB_FAILURES: &str = "/v1/jobs/{id}/failures";
/// `POST` scores a spec from the cache alone.
pub const RESCORE: &str = "/v1/rescore";
/// `POST` the samples of a spec scored from the cache alone.
pub const RESCORE_SAMPLES: &str = "/v1/rescore/samples";

// ---- schedules (admin token) ----

/// `POST` creates a schedule, `GET` lists them.
pub const SCHEDULES: &str = "/v1/schedules";
/// `GET` one schedule with its runs, `DELETE` removes it.
pub const SCHEDULE: &str = "/v1/schedules/{name}";
/// `POST` pauses a schedule.
pub const SCHEDULE_PAUSE: &str = "/v1/schedules/{name}/pause";
/// `POST` resumes a schedule.
pub const SCHEDULE_RESUME: &str = "/v1/schedules/{name}/resume";
/// `POST` makes a schedule fire now.
pub const SCHEDULE_RUN: &str = "/v1/schedules/{name}/run";

// ---- leases (worker token) ----

pub const LEASES_CLAIM: &str = "/v1/leases/claim";
pub const LEASES_HEARTBEAT: &str = "/v1/leases/heartbeat";
pub const LEASES_COMPLETE: &str = "/v1/leases/complete";
pub const LEASES_FAIL: &str = "/v1/leases/fail";
pub const LEASES_RELEASE: &str = "/v1/leases/release";
/// `POST` the outputs a running shard has written so far.
pub const LEASES_FLUSH: &str = "/v1/leases/flush";

// ---- provider batches (worker token) ----

pub const BATCHES_RESERVE: &str = "/v1/batches/reserve";
pub const BATCHES_SUBMIT: &str = "/v1/batches/submit";
pub const BATCHES_REQUESTS: &str = "/v1/batches/requests";
pub const BATCHES_CLAIM: &str = "/v1/batches/claim";
pub const BATCHES_HEARTBEAT: &str = "/v1/batches/heartbeat";
pub const BATCHES_UPDATE: &str = "/v1/batches/update";
pub const BATCHES_FINISH: &str = "/v1/batches/finish";

// ---- no token ----

pub const HEALTHZ: &str = "/healthz";
pub const METRICS: &str = "/metrics";
/// `GET` the API's OpenAPI description (generated from the code; it holds
/// no secrets).
pub const OPENAPI: &str = "/openapi.json";

/// Every route the coordinator serves, as (method, path pattern): what the
/// OpenAPI description must list, no more and no less.
pub const ALL: &[(&str, &str)] = &[
    ("POST", JOBS),
    ("GET", JOBS),
    ("GET", JOB),
    ("POST", JOB_CANCEL),
    ("GET", JOB_RESULTS),
    ("GET", JOB_SAMPLES),
    ("GET", JOB_FAILURES),
    ("POST", RESCORE),
    ("POST", RESCORE_SAMPLES),
    ("POST", SCHEDULES),
    ("GET", SCHEDULES),
    ("GET", SCHEDULE),
    ("DELETE", SCHEDULE),
    ("POST", SCHEDULE_PAUSE),
    ("POST", SCHEDULE_RESUME),
    ("POST", SCHEDULE_RUN),
    ("POST", LEASES_CLAIM),
    ("POST", LEASES_HEARTBEAT),
    ("POST", LEASES_COMPLETE),
    ("POST", LEASES_FAIL),
    ("POST", LEASES_RELEASE),
    ("POST", LEASES_FLUSH),
    ("POST", BATCHES_RESERVE),
    ("POST", BATCHES_SUBMIT),
    ("POST", BATCHES_REQUESTS),
    ("POST", BATCHES_CLAIM),
    ("POST", BATCHES_HEARTBEAT),
    ("POST", BATCHES_UPDATE),
    ("POST", BATCHES_FINISH),
    ("GET", HEALTHZ),
    ("GET", METRICS),
    ("GET", OPENAPI),
];

/// A route pattern with its `{id}` filled in.
fn with_id(pattern: &str, id: Uuid) -> String {
    pattern.replacen("{id}", &id.to_string(), 1)
}

/// `/v1/jobs/{id}` for one job.
pub fn job_of(id: Uuid) -> String {
    with_id(JOB, id)
}

/// `/v1/jobs/{id}/cancel` for one job.
pub fn job_cancel_of(id: Uuid) -> String {
    with_id(JOB_CANCEL, id)
}

/// `/v1/jobs/{id}/results` for one job.
pub fn job_results_of(id: Uuid) -> String {
    with_id(JOB_RESULTS, id)
}

/// `/v1/jobs/{id}/samples` for one job.
pub fn job_samples_of(id: Uuid) -> String {
    with_id(JOB_SAMPLES, id)
}

/// `/v1/jobs/{id}/failures` for one job.
pub fn job_failures_of(id: Uuid) -> String {
    with_id(JOB_FAILURES, id)
}

/// A schedule route for the schedule `name` (letters, digits, `.`, `_`
/// and `-` only, so it needs no escaping in a path).
pub fn schedule_path(pattern: &str, name: &str) -> String {
    pattern.replacen("{name}", name, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_paths_fill_the_name() {
        assert_eq!(
            schedule_path(SCHEDULE_RUN, "nightly-mmlu"),
            "/v1/schedules/nightly-mmlu/run"
        );
    }

    #[test]
    fn job_paths_fill_the_id() {
        let id = Uuid::nil();
        let s = "00000000-0000-0000-0000-000000000000";
        assert_eq!(job_of(id), format!("/v1/jobs/{s}"));
        assert_eq!(job_cancel_of(id), format!("/v1/jobs/{s}/cancel"));
        assert_eq!(job_results_of(id), format!("/v1/jobs/{s}/results"));
        assert_eq!(job_samples_of(id), format!("/v1/jobs/{s}/samples"));
        assert_eq!(job_failures_of(id), format!("/v1/jobs/{s}/failures"));
    }

    #[test]
    fn every_route_is_versioned_or_operational() {
        for &(method, route) in ALL {
            assert!(
                matches!(method, "GET" | "POST" | "DELETE"),
                "{method} {route}"
            );
            assert!(
                route.starts_with("/v1/") || [HEALTHZ, METRICS, OPENAPI].contains(&route),
                "{route}"
            );
        }
        assert_eq!(HEALTHZ, "/healthz");
        assert_eq!(METRICS, "/metrics");
        assert_eq!(OPENAPI, "/openapi.json");
    }
}
