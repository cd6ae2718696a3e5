//! The lease API (worker token): claim shards, heartbeat, flush the
//! outputs of a running shard, and complete, fail or release a lease. Every call is retried on transient failures; a
//! 409 on `complete`/`fail`/`release` is the expected answer of a fenced
//! lease and comes back as [`LeaseOutcome::Fenced`].

use jobs::protocol::routes;
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, FailRequest, FailResponse,
    FlushRequest, FlushResponse, HeartbeatRequest, HeartbeatResponse, ReleaseRequest,
    ReleaseResponse,
};
use reqwest::Method;

use crate::error::{ClientError, LeaseOutcome};
use crate::http::{fenced_to_outcome, CoordinatorClient};

impl CoordinatorClient {
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        self.call_retrying(Method::POST, routes::LEASES_CLAIM, req)
            .await
    }

    /// A 409 answer comes back as [`ClientError::Fenced`].
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.call_retrying(Method::POST, routes::LEASES_HEARTBEAT, req)
            .await
    }

    pub async fn complete(
        &self,
        req: &CompleteRequest,
    ) -> Result<LeaseOutcome<CompleteResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::LEASES_COMPLETE, req)
                .await,
        )
    }

    pub async fn fail(&self, req: &FailRequest) -> Result<LeaseOutcome<FailResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::LEASES_FAIL, req)
                .await,
        )
    }

    /// Hands in the outputs a running shard has written so far. Never
    /// fenced: what was paid for is indexed whoever holds the lease now.
    pub async fn flush(&self, req: &FlushRequest) -> Result<FlushResponse, ClientError> {
        self.call_retrying(Method::POST, routes::LEASES_FLUSH, req)
            .await
    }

    pub async fn release(
        &self,
        req: &ReleaseRequest,
    ) -> Result<LeaseOutcome<ReleaseResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::LEASES_RELEASE, req)
                .await,
        )
    }
}
