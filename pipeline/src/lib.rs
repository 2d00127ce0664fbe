//! imagepipe's core: the transform spec, the image engine, and what the gateway and the workers
//! share. It never depends on a web framework, so offline tools run the same code as the service.

pub mod config;
pub mod engine;
pub mod failure;
pub mod gc;
pub mod job;
pub mod queue;
pub mod spec;
pub mod storage;
pub mod view;
pub mod webhooks;
