//! What a submitted job may ask of the cluster, set by the operator: a job
//! is untrusted input, and a spec asking for a billion samples per document
//! would take the coordinator's memory while it plans.

use jobs::JobSpec;

/// Samples per document (`task.generation.n`) allowed by default.
pub const DEFAULT_MAX_SAMPLES_PER_DOC: u32 = 1_000;
/// Tokens per answer (`task.generation.max_tokens`) allowed by default.
pub const DEFAULT_MAX_TOKENS: u32 = 131_072;
/// Requests per shard (`sharding.shard_size`) allowed by default: the
/// planner holds a shard in memory and the store keeps it in one row.
pub const DEFAULT_MAX_SHARD_SIZE: u32 = 10_000;
/// Bytes of a submitted spec allowed by default: 1 MiB, hundreds of times a
/// real spec (templates included).
pub const DEFAULT_MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// The operator's limits on a job's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    pub max_samples_per_doc: u32,
    pub max_tokens: u32,
    /// Largest request body carrying a spec (submit, rescore).
    pub max_spec_bytes: u64,
    /// Most requests in one shard.
    pub max_shard_size: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            max_samples_per_doc: DEFAULT_MAX_SAMPLES_PER_DOC,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_spec_bytes: DEFAULT_MAX_SPEC_BYTES,
            max_shard_size: DEFAULT_MAX_SHARD_SIZE,
        }
    }
}

impl JobLimits {
    /// The first limit `spec` passes, as a message naming the field, its
    /// value, the limit and the setting that raises it.
    pub fn check(&self, spec: &JobSpec) -> Result<(), String> {
        let generation = &spec.task.generation;
        let over = |field: &str, value: u32, limit: u32, setting: &str| {
            Err(format!(
                "{field} is {value}; this coordinator allows at most {limit} \
                 (its operator sets that with `serve {setting}`)"
            ))
        };
        if generation.n > self.max_samples_per_doc {
            return over(
                "task.generation.n",
                generation.n,
                self.max_samples_per_doc,
                "--max-samples-per-doc",
            );
        }
        if generation.max_tokens > self.max_tokens {
            return over(
                "task.generation.max_tokens",
                generation.max_tokens,
                self.max_tokens,
                "--max-tokens",
            );
        }
        if spec.sharding.shard_size > self.max_shard_size {
            return over(
                "sharding.shard_size",
                spec.sharding.shard_size,
                self.max_shard_size,
                "--max-shard-size",
            );
        }
        // A judge's sampling is held to the same limits as the task's.
        for (i, metric) in spec.metrics.iter().enumerate() {
            let Some(g) = &metric.generation else {
                continue;
            };
            if g.n > self.max_samples_per_doc {
                return over(
                    &format!("metrics[{i}].generation.n"),
                    g.n,
                    self.max_samples_per_doc,
                    "--max-samples-per-doc",
                );
            }
            if g.max_tokens > self.max_tokens {
                return over(
                    &format!("metrics[{i}].generation.max_tokens"),
                    g.max_tokens,
                    self.max_tokens,
                    "--max-tokens",
                );
            }
        }
        Ok(())
    }
}
