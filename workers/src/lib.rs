//! imagepipe's worker. `worker transform` runs the engine on local files; the queue consumer
//! lands with the queue and storage.

pub mod cli;
pub mod gc;
pub mod transform;
