//! imagepipe's HTTP gateway. This first cut only reads its settings: the HTTP API itself is
//! issue 5 ("The gateway"), and until it lands `gateway` says so and exits with status 1.

use clap::Parser;
use pipeline::config::{parse_size, ConnectionArgs};

/// `gateway` flags (API.md § Processes).
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "imagepipe HTTP gateway")]
pub struct Settings {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Address to listen on.
    #[arg(long, env = "IMAGEPIPE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// API keys (KEY1,KEY2 or a file with one per line); unset: no authentication.
    #[arg(long, env = "IMAGEPIPE_API_KEYS")]
    pub api_keys: Option<String>,
    /// Largest accepted upload.
    #[arg(long, env = "IMAGEPIPE_MAX_UPLOAD", default_value = "50MB", value_parser = parse_size)]
    pub max_upload: u64,
    /// Run this many worker loops in-process (the one-command local setup).
    #[arg(long, default_value_t = 0)]
    pub embedded_workers: usize,
}
