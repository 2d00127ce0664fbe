//! imagepipe's core: the transform spec, the image engine, the queue and result store on Redis,
//! object storage, and what the gateway and the workers share. It has no HTTP server or client
//! and no command-line parsing, so offline tools run the same code as the service.

pub mod config;
pub mod engine;
pub mod failure;
pub mod gc;
pub mod job;
pub mod queue;
pub mod shutdown;
pub mod signing;
pub mod spec;
pub mod storage;
pub mod text;
pub mod video;
pub mod view;
pub mod webhooks;
