//! The provider-batch API (worker token, see `jobs::protocol::provider_batch`): how workers
//! submit shards as OpenAI Batch API batches and poll them. Retried on
//! transient failures like the lease API; 409 means fenced.

use jobs::protocol::routes;
use jobs::InferenceRequest;
use jobs::{
    protocol::BatchAccepted, protocol::BatchClaimRequest, protocol::BatchClaimResponse,
    protocol::BatchFinishRequest, protocol::BatchFinishResponse, protocol::BatchHeartbeatRequest,
    protocol::BatchHeartbeatResponse, protocol::BatchRequestsRequest,
    protocol::BatchReserveRequest, protocol::BatchReserveResponse, protocol::BatchSubmitRequest,
    protocol::BatchUpdateRequest,
};
use reqwest::Method;

use crate::error::{ClientError, LeaseOutcome};
use crate::http::{fenced_to_outcome, CoordinatorClient};

impl CoordinatorClient {
    /// Room under the model's enqueued-token cap. 409 → fenced.
    pub async fn batch_reserve(
        &self,
        req: &BatchReserveRequest,
    ) -> Result<LeaseOutcome<BatchReserveResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::BATCHES_RESERVE, req)
                .await,
        )
    }

    /// `running` → `submitted` with the batch ids. 409 → fenced.
    pub async fn batch_submit(
        &self,
        req: &BatchSubmitRequest,
    ) -> Result<LeaseOutcome<BatchAccepted>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::BATCHES_SUBMIT, req)
                .await,
        )
    }

    /// The shard's requests in planned order (what batch state indices point
    /// into).
    pub async fn batch_requests(
        &self,
        req: &BatchRequestsRequest,
    ) -> Result<Vec<InferenceRequest>, ClientError> {
        self.call_retrying(Method::POST, routes::BATCHES_REQUESTS, req)
            .await
    }

    /// Poll leases on submitted shards that are due.
    pub async fn batch_claim(
        &self,
        req: &BatchClaimRequest,
    ) -> Result<BatchClaimResponse, ClientError> {
        self.call_retrying(Method::POST, routes::BATCHES_CLAIM, req)
            .await
    }

    /// Renews a poll lease; a 409 comes back as [`ClientError::Fenced`].
    pub async fn batch_heartbeat(
        &self,
        req: &BatchHeartbeatRequest,
    ) -> Result<BatchHeartbeatResponse, ClientError> {
        self.call_retrying(Method::POST, routes::BATCHES_HEARTBEAT, req)
            .await
    }

    /// Records a submitted shard's new state. 409 → fenced.
    pub async fn batch_update(
        &self,
        req: &BatchUpdateRequest,
    ) -> Result<LeaseOutcome<BatchAccepted>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::BATCHES_UPDATE, req)
                .await,
        )
    }

    /// Completes, fails or cancels a submitted shard. 409 → fenced.
    pub async fn batch_finish(
        &self,
        req: &BatchFinishRequest,
    ) -> Result<LeaseOutcome<BatchFinishResponse>, ClientError> {
        fenced_to_outcome(
            self.call_retrying(Method::POST, routes::BATCHES_FINISH, req)
                .await,
        )
    }
}
