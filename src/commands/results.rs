//! Writing a job's results: scores from the cache, `samples.jsonl` and
//! `metrics.json` in the output folder, the metrics table on stdout.

use anyhow::Context;
use std::path::Path;

use jobs::JobSpec;

use super::failure::CmdResult;
use super::home::write_json;
use crate::exit;

/// Scores `spec` from the cache, writes `samples.jsonl` and `metrics.json`
/// into `out_dir`, and prints the metrics table. Returns the exit code:
/// incomplete when any output is missing.
pub async fn write_results(
    coordinator: &coordinator::Coordinator,
    spec: &JobSpec,
    out_dir: &Path,
) -> CmdResult {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let samples_path = out_dir.join("samples.jsonl");
    let file = std::fs::File::create(&samples_path)
        .with_context(|| format!("cannot create {}", samples_path.display()))?;
    let mut samples = std::io::BufWriter::new(file);
    // An engine job's samples show each prompt as its chat template made it.
    let model_text = worker::backend::engine::EngineText::of(&spec.model)
        .context("cannot read the model's tokenizer and chat template")?;
    let outcome = coordinator
        .rescore_spec_rendered(spec, Some(&mut samples), model_text)
        .await
        .context("cannot score the job from the cache")?;
    std::io::Write::flush(&mut samples)
        .with_context(|| format!("cannot write {}", samples_path.display()))?;
    let metrics_path = out_dir.join("metrics.json");
    write_json(&metrics_path, &outcome.report)?;

    println!("{}", outcome.report.to_table());
    eprintln!(
        "wrote {} and {}",
        samples_path.display(),
        metrics_path.display()
    );

    if outcome.missing_requests > 0 {
        let examples: Vec<String> = outcome
            .missing_examples
            .iter()
            .take(5)
            .map(|m| format!("doc {} (key {})", m.doc_id, short_key(&m.key.0)))
            .collect();
        let n = outcome.missing_requests;
        eprintln!(
            "error: {n} {} failed or {} missing from the cache (e.g. {}); \
             the other docs were scored. Run the same command again to retry only those.",
            if n == 1 { "request" } else { "requests" },
            if n == 1 { "is" } else { "are" },
            examples.join(", ")
        );
        return Ok(exit::INCOMPLETE);
    }
    Ok(exit::OK)
}

/// The first 12 characters of a request key, for messages.
pub fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
}
