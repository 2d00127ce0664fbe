//! The gateway's integration tests: real HTTP on port 0, real Redis, real storage (a directory,
//! or s3s-fs), real worker processes.

mod abuse;
mod auth;
mod browser;
mod client;
mod contract;
mod dashboard;
mod events;
mod failover;
mod faults;
mod fencing;
mod frames;
mod helpers;
mod hostile;
mod jobs;
mod ops;
mod processes;
mod promises;
mod redis_tls;
mod tenants;
mod uploads;
mod videos;
mod web;
mod webhooks;
