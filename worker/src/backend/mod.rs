//! Inference backends: the [`Backend`] trait a worker runs shards on, its
//! implementations, and what they share.
//!
//! - [`interface`]: the [`Backend`] trait (`run` one request; `run_shard`,
//!   whose default is `sequential`).
//! - [`BackendError`], in [`error`].
//! - [`factory`]: [`build_backend`] and [`background_task`], the one place
//!   that maps a backend kind to its implementation.
//! - [`cache`]: [`BackendCache`], one backend per model spec; [`load`]: the
//!   per-model load that drives claiming.
//! - [`context`]: [`ShardContext`], what a backend gets to run a shard;
//!   [`flush`]: partial segments written while a shard runs;
//!   [`background`]: what a background task gets.
//! - Implementations: [`engine`], [`openai`], [`openai_batch`]; the two
//!   endpoint backends build their HTTP client in `http_client`, trusting
//!   what [`tls`] says.

pub mod background;
mod breaker;
pub mod cache;
pub mod context;
pub mod engine;
pub mod error;
pub mod factory;
pub mod flush;
mod http_client;
pub mod interface;
pub mod key_policy;
pub mod load;
pub mod openai;
pub mod openai_batch;
mod rate_limit;
mod sequential;
pub mod tls;

pub use background::{BackgroundContext, BackgroundTask};
pub use breaker::{DEFAULT_COOLDOWN as BREAKER_COOLDOWN, DEFAULT_THRESHOLD as BREAKER_THRESHOLD};
pub use cache::{BackendCache, BackendFactory};
pub use context::ShardContext;
pub use engine::EngineBackend;
pub use error::{BackendError, ErrorReach};
pub use factory::{background_task, build_backend};
pub use flush::{FlushPolicy, DEFAULT_FLUSH_OUTPUTS, DEFAULT_FLUSH_SECS};
pub use interface::Backend;
pub use key_policy::{KeyPolicy, DEFAULT_ALLOWED_KEY_ENVS};
pub use load::{ShardLoad, CLAIM_AHEAD};
pub use openai::OpenAiBackend;
pub use openai_batch::OpenAiBatchBackend;
pub use rate_limit::TokenBucket;
