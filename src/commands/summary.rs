//! The lines `run` prints about what a finished job did: documents,
//! requests, cache hits, tokens and cost. A run answered wholly from the
//! cache says so, with what its outputs cost when they were made, instead
//! of "0 tokens" as if nothing had been evaluated.

use coordinator::RescoreOutcome;
use jobs::protocol::JobStatus;
use jobs::JobSpec;

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary of a finished run of `spec`, whose outputs were scored in
/// `scored` (with their recorded usage).
pub fn counts_lines(spec: &JobSpec, status: &JobStatus, scored: &RescoreOutcome) -> Vec<String> {
    let c = &status.counts;
    let bad_rows = if c.bad_rows > 0 {
        format!("; {} bad rows skipped", c.bad_rows)
    } else {
        String::new()
    };
    // Requests neither cached nor run: those `backend = "none"` cannot run.
    let not_run = c.requests.saturating_sub(c.cached + c.completed + c.failed);
    let counts = format!(
        "{} docs, {} requests: {} from the cache, {} run, {} failed{}",
        c.docs,
        c.requests,
        c.cached,
        c.completed,
        c.failed,
        if not_run > 0 {
            format!(", {not_run} not in the cache and not run")
        } else {
            String::new()
        }
    );
    let all_cached = c.requests > 0 && c.cached == c.requests && scored.missing_requests == 0;
    if all_cached {
        let made = scored.usage;
        let cost = jobs::cost::job_cost(&spec.model, made)
            .map(|cost| format!(", {}", cost.describe()))
            .unwrap_or_default();
        return vec![format!(
            "{counts}; all answered from the cache, none evaluated again (they cost {} prompt + \
             {} completion tokens when made{cost}){bad_rows}",
            thousands(made.prompt_tokens),
            thousands(made.completion_tokens),
        )];
    }
    let mut lines = vec![format!(
        "{counts}; tokens: {} prompt, {} completion{bad_rows}",
        c.usage.prompt_tokens, c.usage.completion_tokens
    )];
    if let Some(cost) = &status.cost {
        lines.push(format!("cost: {}", cost.describe()));
    }
    lines
}

/// One line per judge of the job (its child jobs): what its requests
/// did, its tokens and cost.
pub fn judge_lines(judges: &[JobStatus]) -> Vec<String> {
    judges
        .iter()
        .map(|j| {
            let c = &j.counts;
            let name = j
                .name
                .rsplit_once("/judge:")
                .map_or(j.name.as_str(), |(_, n)| n);
            let cost = j
                .cost
                .as_ref()
                .map(|cost| format!("; cost: {}", cost.describe()))
                .unwrap_or_default();
            format!(
                "judge {name}: {} requests: {} from the cache, {} run, {} failed; tokens: {} \
                 prompt, {} completion{cost}",
                c.requests,
                c.cached,
                c.completed,
                c.failed,
                c.usage.prompt_tokens,
                c.usage.completion_tokens
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(9511), "9,511");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
