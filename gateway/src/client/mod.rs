//! `imagepipe`, the command-line client: submit files and folders and download every output,
//! look at jobs and the dead-letter list, and load-test a deployment.

mod bench;
mod submit;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pipeline::view::JobView;
use serde_json::Value;

use crate::routes::dead_letter::DeadLetterList;

pub use bench::BenchArgs;
pub use submit::SubmitArgs;

#[derive(Debug, Parser)]
#[command(
    name = "imagepipe",
    version,
    about = "imagepipe client: send images, get the outputs"
)]
pub struct Cli {
    /// The gateway.
    #[arg(
        long,
        env = "IMAGEPIPE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// An API key, when the gateway wants one.
    #[arg(long, env = "IMAGEPIPE_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files and folders, wait for the jobs, download every output into --out.
    Submit(SubmitArgs),
    /// Show a job.
    Status { id: String },
    /// The dead-letter list.
    #[command(name = "dead-letter", subcommand)]
    DeadLetter(DeadLetter),
    /// Load-test a running deployment (and the engine alone on the same files).
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetter {
    /// Jobs that exhausted their retries.
    List,
    /// Put a job back on the queue.
    Replay { id: String },
}

/// A connection to a gateway.
#[derive(Clone)]
pub struct Client {
    pub server: String,
    key: Option<String>,
    pub http: reqwest::Client,
}

/// What went wrong, in words for people.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the server refused the API key (401): check --key / IMAGEPIPE_KEY")]
    Unauthorized,
    #[error("{status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("{0}")]
    Local(String),
}

impl Client {
    pub fn new(server: &str, key: Option<String>) -> Client {
        Client {
            server: server.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.server)
        };
        let request = self.http.request(method, url);
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends a request and returns the JSON body of a 2xx answer as a `T`, or a readable error.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| {
            ClientError::Local(format!(
                "the server answered something unexpected: {}",
                pipeline::text::error_chain(&e)
            ))
        })
    }

    /// A job's record.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        self.json(self.request(reqwest::Method::GET, &format!("/v1/jobs/{id}")))
            .await
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            reason: reason(&e),
        })?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            return Ok(response);
        }
        if status.as_u16() == 401 {
            return Err(ClientError::Unauthorized);
        }
        let detail = match response.json::<Value>().await {
            Ok(problem) => problem["detail"].as_str().unwrap_or("error").to_owned(),
            Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            detail,
        })
    }
}

/// The innermost cause: what went wrong on the wire ("Connection refused"), not the wrapping.
fn reason(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    innermost.to_string()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(&cli.server, cli.key.clone());
    let result = runtime.block_on(async {
        match cli.command {
            Command::Submit(args) => submit::run(&client, args).await,
            Command::Status { id } => status(&client, &id).await,
            Command::DeadLetter(DeadLetter::List) => dead_letters(&client).await,
            Command::DeadLetter(DeadLetter::Replay { id }) => replay(&client, &id).await,
            Command::Bench(args) => bench::run(&client, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imagepipe: {e}");
            ExitCode::from(1)
        }
    }
}

/// `imagepipe status ID`: the job's record, as the server gives it.
async fn status(client: &Client, id: &str) -> Result<ExitCode, ClientError> {
    let job: Value = client
        .json(client.request(reqwest::Method::GET, &format!("/v1/jobs/{id}")))
        .await?;
    println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `imagepipe dead-letter list`: one line per job.
async fn dead_letters(client: &Client) -> Result<ExitCode, ClientError> {
    let list: DeadLetterList = client
        .json(client.request(reqwest::Method::GET, "/v1/dead-letter?limit=100"))
        .await?;
    if list.jobs.is_empty() {
        println!("the dead-letter list is empty");
    }
    for entry in list.jobs {
        let (code, message) = entry
            .job
            .error
            .map(|e| (e.code.as_str(), e.message))
            .unwrap_or_default();
        println!(
            "{}  failed {}  {code}: {message}",
            entry.job.id, entry.failed_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `imagepipe dead-letter replay ID`.
async fn replay(client: &Client, id: &str) -> Result<ExitCode, ClientError> {
    let job: JobView = client
        .json(client.request(
            reqwest::Method::POST,
            &format!("/v1/dead-letter/{id}/replay"),
        ))
        .await?;
    println!("{} is {} again", job.id, job.status.as_str());
    Ok(ExitCode::SUCCESS)
}
