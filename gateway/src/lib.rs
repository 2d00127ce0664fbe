//! imagepipe's HTTP gateway: the API of API.md on actix-web. It stores uploads, queues jobs and
//! reads results; image work happens in workers (or in embedded worker loops with
//! `--embedded-workers N`).

pub mod auth;
pub mod client;
pub mod cors;
pub mod error;
pub mod events;
pub mod intake;
mod local_redis;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;

pub use settings::Settings;
pub use startup::Application;
