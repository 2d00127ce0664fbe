//! workers' integration tests: one binary, run against the real `worker` executable.

mod transform;
