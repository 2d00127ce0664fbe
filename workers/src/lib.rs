//! imagepipe's worker: the service that runs jobs from Redis ([`service::Worker`]), and the
//! commands beside it (`worker transform`, `worker gc`).

pub mod args;
pub mod cli;
pub mod connect;
pub mod gc;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod transform;
pub mod webhooks;
