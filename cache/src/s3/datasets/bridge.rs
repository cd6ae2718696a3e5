//! A tokio runtime of the dataset reader's own, for its S3 calls. The
//! reader is blocking code and is called both from blocking threads (the
//! planner's) and from async code (`run --dry-run`'s estimate, on a
//! runtime thread): blocking on a future of the caller's runtime would
//! panic or deadlock there, so the calls run on this runtime's one thread
//! and the caller only waits for their answer. The aws-sdk client's
//! connections belong to this runtime too, so none outlives the runtime
//! that made it. Started on first use.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use jobs::dataset::ObjectSourceError;

#[derive(Default)]
pub(super) struct Bridge {
    runtime: OnceLock<Result<Runtime, String>>,
}

impl Bridge {
    fn runtime(&self) -> Result<&Runtime, ObjectSourceError> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("shardline-s3-datasets")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        runtime.as_ref().map_err(|e| {
            ObjectSourceError::Unavailable(format!("cannot start the S3 client's runtime: {e}"))
        })
    }

    /// Runs `future` on the bridge's runtime and waits for its output.
    pub(super) fn run<F>(&self, future: F) -> Result<F::Output, ObjectSourceError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.runtime()?.spawn(future);
        futures::executor::block_on(task).map_err(|e| {
            ObjectSourceError::Unavailable(format!("the S3 request stopped unexpectedly: {e}"))
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // The last reader may be dropped in async code, where dropping a
        // runtime the usual way (waiting for its tasks) would panic.
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
