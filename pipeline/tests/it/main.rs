//! pipeline's integration tests: one binary, one module per subsystem.

mod animation;
mod colour;
mod common;
mod engine;
mod frames;
mod props;
mod queue;
mod replicated;
mod spec;
mod storage;
mod tenants;
mod video;
