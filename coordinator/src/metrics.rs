//! The coordinator's Prometheus metrics: protocol counters registered once
//! at start, and gauges read from the store at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::StoreMetrics;

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every job state, so a state with no job still shows as 0.
const JOB_STATES: [&str; 5] = ["planning", "running", "completed", "failed", "cancelled"];
/// Every shard state, as for jobs.
const SHARD_STATES: [&str; 7] = [
    "available",
    "running",
    "submitted",
    "completed",
    "failed",
    "dead",
    "cancelled",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// Counters the lease protocol increments. Cheap to bump from any thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub claims: Counter,
    pub leases_granted: Counter,
    pub completions: Counter,
    pub completions_fenced: Counter,
    pub shard_failures: Counter,
    pub releases: Counter,
    pub flushes: Counter,
    pub outputs_flushed: Counter,
    pub leases_reaped: Counter,
    pub requests_cached_at_claim: Counter,
}

/// Gauges that mirror the store's aggregates; set at every scrape.
#[derive(Debug, Default)]
struct StoreGauges {
    jobs: Family<StateLabel, Gauge>,
    shards: Family<StateLabel, Gauge>,
    requests_completed: Gauge,
    requests_failed: Gauge,
    requests_cached: Gauge,
    cache_index_keys: Gauge,
}

/// The registry and the metrics in it.
#[derive(Debug)]
pub struct Metrics {
    pub counters: Counters,
    gauges: StoreGauges,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let counters = Counters::default();
        let gauges = StoreGauges::default();
        let mut registry = Registry::default();
        let c = &counters;
        // The client library appends `_total` to counter names.
        for (name, help, counter) in [
            ("shardline_claims", "Claim calls", &c.claims),
            (
                "shardline_leases_granted",
                "Leases handed to workers",
                &c.leases_granted,
            ),
            (
                "shardline_completions",
                "Shard completions accepted",
                &c.completions,
            ),
            (
                "shardline_completions_fenced",
                "Late completions refused",
                &c.completions_fenced,
            ),
            (
                "shardline_shard_failures",
                "Shard attempts failed",
                &c.shard_failures,
            ),
            ("shardline_releases", "Shards handed back", &c.releases),
            (
                "shardline_flushes",
                "Partial segments handed in by running shards",
                &c.flushes,
            ),
            (
                "shardline_outputs_flushed",
                "Outputs indexed from partial segments while their shard ran",
                &c.outputs_flushed,
            ),
            (
                "shardline_leases_reaped",
                "Expired leases reaped",
                &c.leases_reaped,
            ),
            (
                "shardline_requests_cached_at_claim",
                "Requests dropped from leases as already cached",
                &c.requests_cached_at_claim,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        let g = &gauges;
        registry.register("shardline_jobs", "Jobs by state", g.jobs.clone());
        registry.register("shardline_shards", "Shards by state", g.shards.clone());
        for (name, help, gauge) in [
            (
                "shardline_requests_completed",
                "Requests completed by shards",
                &g.requests_completed,
            ),
            (
                "shardline_requests_failed",
                "Requests that failed after retries",
                &g.requests_failed,
            ),
            (
                "shardline_requests_cached",
                "Requests found in the cache at planning",
                &g.requests_cached,
            ),
            (
                "shardline_cache_index_keys",
                "Keys in the cache index",
                &g.cache_index_keys,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        Metrics {
            counters,
            gauges,
            registry,
        }
    }

    /// The exposition text, with the gauges set from `store`'s aggregates.
    pub fn encode(&self, store: &StoreMetrics) -> Result<String, std::fmt::Error> {
        let g = &self.gauges;
        set_by_state(&g.jobs, &JOB_STATES, &store.jobs_by_state);
        set_by_state(&g.shards, &SHARD_STATES, &store.shards_by_state);
        g.requests_completed
            .set(saturating_i64(store.requests_completed));
        g.requests_failed.set(saturating_i64(store.requests_failed));
        g.requests_cached.set(saturating_i64(store.requests_cached));
        g.cache_index_keys
            .set(saturating_i64(store.cache_index_keys));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn set_by_state(family: &Family<StateLabel, Gauge>, states: &[&str], counts: &[(String, u64)]) {
    for state in states {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&StateLabel {
                state: (*state).to_string(),
            })
            .set(saturating_i64(n));
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_store_gauges_are_exposed() {
        let metrics = Metrics::new();
        metrics.counters.claims.inc();
        metrics.counters.claims.inc();
        let store = StoreMetrics {
            jobs_by_state: vec![("running".into(), 3)],
            shards_by_state: vec![("dead".into(), 1)],
            requests_completed: 40,
            requests_failed: 2,
            requests_cached: 7,
            cache_index_keys: 47,
        };
        let text = metrics.encode(&store).unwrap();
        for line in [
            "shardline_claims_total 2",
            "shardline_completions_fenced_total 0",
            "shardline_jobs{state=\"running\"} 3",
            "shardline_jobs{state=\"planning\"} 0",
            "shardline_shards{state=\"dead\"} 1",
            "shardline_shards{state=\"submitted\"} 0",
            "shardline_requests_completed 40",
            "shardline_cache_index_keys 47",
            "# TYPE shardline_claims counter",
            "# TYPE shardline_jobs gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A second scrape sets the same gauges again rather than adding.
        let again = metrics.encode(&store).unwrap();
        assert!(
            again.contains("shardline_jobs{state=\"running\"} 3"),
            "{again}"
        );
    }
}
