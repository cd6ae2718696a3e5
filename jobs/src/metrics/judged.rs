//! Scoring judge metrics: the requests that grade a scored document, and
//! its record completed with their verdicts, grades and scores.

use crate::judge::{JudgeItem, JudgeRequest, Judges};
use crate::results::{JudgeVerdict, SampleOutputs, SampleRecord};

use super::Scorer;

impl Scorer {
    /// The job's judges.
    pub fn judges(&self) -> &Judges {
        &self.judges
    }

    /// The judge requests for `record`'s outputs: none when the job has no
    /// judge or the document misses an output. A grading template that
    /// fails for this document gives none either (the planner refused
    /// such documents when the job ran), and its record shows no verdict.
    pub fn judge_requests(&self, item: &JudgeItem, record: &SampleRecord) -> Vec<JudgeRequest> {
        if self.judges.is_empty() || record.missing {
            return Vec::new();
        }
        let SampleOutputs::Generated(texts) = &record.outputs else {
            return Vec::new();
        };
        let texts: Vec<String> = texts
            .iter()
            .map(|t| t.clone().unwrap_or_default())
            .collect();
        self.judges.requests(item, &texts).unwrap_or_default()
    }

    /// Adds each judge's verdicts to `record` (`verdicts[i]` answers
    /// `requests[i]`; `None` when not in the cache), and the judge's score
    /// where at least one verdict gave a grade.
    pub fn add_verdicts(
        &self,
        record: &mut SampleRecord,
        requests: &[JudgeRequest],
        verdicts: &[Option<String>],
    ) {
        let names = self.judges.names();
        for (judge, name) in names.iter().enumerate() {
            let mine: Vec<JudgeVerdict> = requests
                .iter()
                .zip(verdicts)
                .filter(|(r, _)| r.judge == judge)
                .map(|(r, verdict)| JudgeVerdict {
                    output: r.output,
                    sample: r.request.sample_index,
                    grade: verdict.as_deref().and_then(|v| self.judges.grade(judge, v)),
                    verdict: verdict.clone(),
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let grades = mine.iter().filter_map(|v| v.grade.as_ref());
            if let Some(score) = self.judges.score(judge, grades) {
                record.scores.insert(name.clone(), score);
            }
            record.judges.insert(name.clone(), mine);
        }
    }
}
