//! The batch calls: a set of requests run to the end over the same steps a
//! serving loop drives one at a time.

use std::collections::HashMap;

use super::request::{
    EngineOutput, GenerateOutput, GenerateRequest, LoglikelihoodRequest, LoglikelihoodScore,
    RequestId, TokenAction,
};
use super::{invalid, LlmEngine};
use crate::error::EngineError;
use crate::executor::Executor;

impl<E: Executor> LlmEngine<E> {
    /// Runs every request to completion, batching them continuously.
    pub fn generate(
        &mut self,
        requests: Vec<GenerateRequest>,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        self.generate_with(requests, |_, _| TokenAction::Continue)
    }

    /// Like [`generate`](Self::generate), calling `on_token(request_index,
    /// tokens_so_far)` after every generated token (stop tokens excepted);
    /// returning [`TokenAction::Stop`] finishes that request with
    /// [`FinishReason::Stopped`]. This is where callers check stop strings.
    ///
    /// The batch calls need an engine with no request pending from `add_*`
    /// (their steps would run those requests without their caller).
    pub fn generate_with(
        &mut self,
        requests: Vec<GenerateRequest>,
        mut on_token: impl FnMut(usize, &[u32]) -> TokenAction,
    ) -> Result<Vec<GenerateOutput>, EngineError> {
        self.check_idle()?;
        for (i, r) in requests.iter().enumerate() {
            self.limits()
                .check_generate(r)
                .map_err(|m| invalid(i, &m))?;
        }
        let mut index_of = HashMap::new();
        for (index, r) in requests.into_iter().enumerate() {
            match self.add_generate(r) {
                Ok(id) => {
                    index_of.insert(id, index);
                }
                Err(e) => {
                    self.abort_all();
                    return Err(reindex(e, index));
                }
            }
        }
        let outputs = self.run_to_end(index_of, |index, toks| on_token(index, toks))?;
        Ok(outputs
            .into_iter()
            .filter_map(|o| match o {
                EngineOutput::Generate(g) => Some(g),
                EngineOutput::Loglikelihood(_) => None,
            })
            .collect())
    }

    /// Scores each continuation given its context: the sum of its tokens'
    /// log-probabilities and whether greedy decoding would produce it. The
    /// context must not be empty (prepend BOS/EOT for unconditional scores,
    /// as lm-evaluation-harness does); truncating long inputs is the
    /// caller's job.
    pub fn loglikelihood(
        &mut self,
        requests: Vec<LoglikelihoodRequest>,
    ) -> Result<Vec<LoglikelihoodScore>, EngineError> {
        self.check_idle()?;
        for (i, r) in requests.iter().enumerate() {
            self.limits()
                .check_loglikelihood(r)
                .map_err(|m| invalid(i, &m))?;
        }
        let mut index_of = HashMap::new();
        for (index, r) in requests.into_iter().enumerate() {
            match self.add_loglikelihood(r) {
                Ok(id) => {
                    index_of.insert(id, index);
                }
                Err(e) => {
                    self.abort_all();
                    return Err(reindex(e, index));
                }
            }
        }
        let outputs = self.run_to_end(index_of, |_, _| TokenAction::Continue)?;
        Ok(outputs
            .into_iter()
            .filter_map(|o| match o {
                EngineOutput::Loglikelihood(l) => Some(l),
                EngineOutput::Generate(_) => None,
            })
            .collect())
    }

    /// Steps until every request in `index_of` is finished; outputs in
    /// index order.
    fn run_to_end(
        &mut self,
        index_of: HashMap<RequestId, usize>,
        mut on_token: impl FnMut(usize, &[u32]) -> TokenAction,
    ) -> Result<Vec<EngineOutput>, EngineError> {
        let mut outputs: Vec<Option<EngineOutput>> = vec![None; index_of.len()];
        while self.has_unfinished() {
            let done = self.step_with(|id, toks| match index_of.get(&id) {
                Some(&index) => on_token(index, toks),
                None => TokenAction::Continue,
            })?;
            for f in done {
                if let Some(&index) = index_of.get(&f.id) {
                    outputs[index] = Some(f.output);
                }
            }
        }
        Ok(outputs.into_iter().flatten().collect())
    }

    fn check_idle(&self) -> Result<(), EngineError> {
        if self.has_unfinished() {
            return Err(EngineError::InvalidStep(format!(
                "{} requests added with add_generate/add_loglikelihood are unfinished; drive them \
                 with step() before a batch call",
                self.num_unfinished()
            )));
        }
        Ok(())
    }
}

/// Renames an `add_*` error after the caller's request index.
fn reindex(e: EngineError, index: usize) -> EngineError {
    match e {
        EngineError::InvalidRequest { message, .. } => {
            EngineError::InvalidRequest { index, message }
        }
        other => other,
    }
}
