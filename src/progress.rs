//! The progress bar of `shardline run`: done/total, cache hits, failures,
//! rate and ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobs::protocol::{JobState, JobStatus};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    planned: bool,
}

impl Progress {
    /// A bar on stderr, or nothing when disabled or stderr is not a terminal.
    pub fn new(job_name: &str, enabled: bool) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                planned: false,
            };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(job_name.to_string());
        bar.set_message("planning");
        Progress {
            bar: Some(bar),
            planned: false,
        }
    }

    pub fn update(&mut self, status: &JobStatus) {
        let Some(bar) = &self.bar else { return };
        if status.state == JobState::Planning {
            // Counts arrive when planning ends.
            bar.set_message("planning");
            return;
        }
        let c = &status.counts;
        if !self.planned {
            // Cached requests count as done from the start, so the rate and
            // ETA reflect only real inference.
            bar.set_length(c.requests);
            bar.set_position(c.cached);
            bar.reset_eta();
            self.planned = true;
        }
        bar.set_position(c.cached + c.completed + c.failed);
        bar.set_message(format!("cached {} failed {}", c.cached, c.failed));
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
