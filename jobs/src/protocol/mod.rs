//! The coordinator ↔ worker HTTP/JSON protocol and the job API's bodies.
//!
//! These are plain data; the coordinator serves them with axum and the worker
//! sends them with reqwest. Both sides depend on this module only, so the
//! protocol has one definition, and [`routes`] names every path once.
//!
//! Routes (all under the coordinator's base URL, bearer-token auth):
//! - admin token: `POST /v1/jobs` (SubmitJobRequest → JobStatus),
//!   `GET /v1/jobs` (Vec<JobStatus>), `GET /v1/jobs/{id}` (JobStatus),
//!   `POST /v1/jobs/{id}/cancel` (JobStatus),
//!   `GET /v1/jobs/{id}/results` (ResultsResponse),
//!   `GET /v1/jobs/{id}/samples` (samples.jsonl, streamed),
//!   `GET /v1/jobs/{id}/failures`,
//!   `POST /v1/rescore` (`{"spec": …}` → ResultsResponse, scored from the
//!   cache alone), `POST /v1/rescore/samples` (same body; samples.jsonl),
//!   `POST /v1/schedules` (NewSchedule → ScheduleStatus), `GET /v1/schedules`
//!   (Vec<ScheduleStatus>), `GET`/`DELETE /v1/schedules/{name}`,
//!   `POST /v1/schedules/{name}/{pause,resume,run}` (ScheduleStatus)
//! - worker token: `POST /v1/leases/claim` (ClaimRequest → ClaimResponse),
//!   `POST /v1/leases/heartbeat` (HeartbeatRequest → HeartbeatResponse),
//!   `POST /v1/leases/complete` (CompleteRequest → CompleteResponse; 409 when
//!   fenced), `POST /v1/leases/fail` (FailRequest → FailResponse; 409 when fenced),
//!   `POST /v1/leases/release` (ReleaseRequest → ReleaseResponse; 409 when fenced),
//!   `POST /v1/leases/flush` (FlushRequest → FlushResponse: outputs of a running
//!   shard, indexed as they land),
//!   and the provider-batch routes `/v1/batches/*` ([`provider_batch`])
//! - none: `GET /healthz`, `GET /metrics`, `GET /openapi.json` (the
//!   OpenAPI description, generated from these types)
//!
//! Arrows run from here to the spec and the domain types the bodies carry,
//! never back.

pub mod cost;
pub mod error;
pub mod job;
pub mod lease;
pub mod provider_batch;
pub mod routes;
pub mod schedule;
pub mod state;

pub use cost::CostSummary;
pub use error::ErrorBody;
pub use job::{JobCounts, JobStatus, ResultsResponse, SubmitJobRequest};
pub use lease::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, FailKind, FailRequest,
    FailResponse, FailedRequest, FlushRequest, FlushResponse, HeartbeatRequest, HeartbeatResponse,
    Lease, PartialOutputs, ReleaseRequest, ReleaseResponse, WorkerCapabilities,
};
pub use provider_batch::{
    BatchAccepted, BatchClaimRequest, BatchClaimResponse, BatchFinishRequest, BatchFinishResponse,
    BatchHeartbeatRequest, BatchHeartbeatResponse, BatchHolder, BatchOutcome, BatchPoll,
    BatchRequestsRequest, BatchReserveRequest, BatchReserveResponse, BatchSubmitRequest,
    BatchUpdateRequest,
};
pub use schedule::{ScheduleRunStatus, ScheduleStatus};
pub use state::{FailureKind, JobState, ShardState};
