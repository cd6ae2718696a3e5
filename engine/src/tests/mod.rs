//! Engine tests on tiny random models: the optimised CPU path against the
//! naive reference, and the scheduler/cache machinery against cold runs.

mod model;
mod safetensors_io;
