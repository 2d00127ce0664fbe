//! `imagepipe submit`: files and folders in, every output out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipeline::job::JobStatus;
use pipeline::view::JobView;
use reqwest::Method;

use super::{Client, ClientError};
use crate::intake::Accepted;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The transform spec: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub spec: String,
    /// Outputs go to DIR/<file stem>/<output name>.<ext>.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Uploads (and jobs followed) at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Give up waiting for a job after this long.
    #[arg(long, default_value = "10m", value_parser = pipeline::config::parse_duration)]
    pub timeout: Duration,
    /// Files, or folders to take every file from (recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// How one file went.
enum Done {
    Ok { outputs: usize },
    Failed { code: String, message: String },
}

impl Done {
    fn failed(code: &str, message: impl Into<String>) -> Done {
        Done::Failed {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// The three progress bars: uploaded, processed, downloaded.
#[derive(Clone)]
struct Bars {
    uploaded: ProgressBar,
    processed: ProgressBar,
    downloaded: ProgressBar,
}

impl Bars {
    fn new(files: usize) -> (MultiProgress, Bars) {
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> ");
        let bar = |name: &str| {
            let bar = bars.add(ProgressBar::new(files as u64));
            bar.set_style(style.clone());
            bar.set_prefix(name.to_owned());
            bar
        };
        let three = Bars {
            uploaded: bar("uploaded"),
            processed: bar("processed"),
            downloaded: bar("downloaded"),
        };
        (bars, three)
    }

    fn finish(&self) {
        for bar in [&self.uploaded, &self.processed, &self.downloaded] {
            bar.finish();
        }
    }
}

pub async fn run(client: &Client, args: SubmitArgs) -> Result<ExitCode, ClientError> {
    let spec = load_spec(&args.spec)?;
    let files = expand(&args.paths)?;
    if files.is_empty() {
        return Err(ClientError::Local("no files to send".into()));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| ClientError::Local(format!("cannot create {}: {e}", args.out.display())))?;
    let dirs = workers::transform::output_dirs(&args.out, &files);
    let (_shown, bars) = Bars::new(files.len());
    let results: Vec<(PathBuf, Done)> =
        futures::stream::iter(files.iter().zip(&dirs).map(|(file, dir)| {
            let (spec, bars) = (&spec, bars.clone());
            async move {
                let done = one(client, file, dir, spec, args.timeout, &bars).await;
                (file.clone(), done)
            }
        }))
        .buffered(args.concurrency.max(1))
        .collect()
        .await;
    bars.finish();
    let failed = report(&results, &args.out);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints each failure and the summary line; returns how many files failed.
fn report(results: &[(PathBuf, Done)], out: &Path) -> usize {
    let mut outputs = 0;
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for (file, done) in results {
        match done {
            Done::Ok { outputs: n } => outputs += n,
            Done::Failed { code, message } => {
                *codes.entry(code.as_str()).or_default() += 1;
                eprintln!("failed: {}: {code}: {message}", file.display());
            }
        }
    }
    let failed: usize = codes.values().sum();
    let mut summary = format!(
        "{} files: {} ok ({outputs} outputs in {}), {failed} failed",
        results.len(),
        results.len() - failed,
        out.display()
    );
    if !codes.is_empty() {
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        summary.push_str(&format!(" ({})", list.join(", ")));
    }
    println!("{summary}");
    failed
}

/// One file: upload, wait for its job, download every output into `dir`.
async fn one(
    client: &Client,
    file: &Path,
    dir: &Path,
    spec: &str,
    timeout: Duration,
    bars: &Bars,
) -> Done {
    let accepted = upload(client, file, spec).await;
    bars.uploaded.inc(1);
    let id = match accepted {
        Ok(id) => id,
        Err(done) => return done,
    };
    let job = match tokio::time::timeout(timeout, wait(client, &id)).await {
        Ok(Ok(job)) => job,
        Ok(Err(e)) => return Done::failed("request", e.to_string()),
        Err(_) => {
            return Done::failed(
                "timeout",
                format!("job {id} did not finish within {timeout:?}"),
            )
        }
    };
    bars.processed.inc(1);
    if job.status != JobStatus::Succeeded {
        return match &job.error {
            Some(error) => Done::failed(error.code.as_str(), error.message.clone()),
            None => Done::failed(job.status.as_str(), ""),
        };
    }
    if let Err(done) = download(client, &job, dir).await {
        return done;
    }
    bars.downloaded.inc(1);
    Done::Ok {
        outputs: job.outputs.len(),
    }
}

/// Uploads one file with the spec; the new job's id.
async fn upload(client: &Client, file: &Path, spec: &str) -> Result<String, Done> {
    // Streamed from disk: a video may be far larger than memory should hold.
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| Done::failed("unreadable", e.to_string()))?;
    let length = opened
        .metadata()
        .await
        .map_err(|e| Done::failed("unreadable", e.to_string()))?
        .len();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(opened, length).file_name(name),
        )
        .text("spec", spec.to_owned());
    match client
        .json::<Accepted>(client.request(Method::POST, "/v1/jobs").multipart(form))
        .await
    {
        Ok(accepted) => Ok(accepted.id),
        Err(ClientError::Api { status, detail }) => {
            Err(Done::failed(&format!("http_{status}"), detail))
        }
        Err(e) => Err(Done::failed("request", e.to_string())),
    }
}

/// Writes every output of `job` under `dir`: `NAME.EXT`, or `NAME/FRAME.EXT` for frames.
async fn download(client: &Client, job: &JobView, dir: &Path) -> Result<(), Done> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Done::failed("write", format!("cannot create {}: {e}", dir.display())))?;
    for output in &job.outputs {
        // S3 storage answers with a redirect to a presigned URL; reqwest follows it.
        let response = client
            .send(client.request(Method::GET, &output.url))
            .await
            .map_err(|e| Done::failed("download", e.to_string()))?;
        let data = response
            .bytes()
            .await
            .map_err(|e| Done::failed("download", e.to_string()))?;
        let extension = extension(&output.content_type);
        let path = match output.frame {
            Some(frame) => dir.join(&output.name).join(format!("{frame}.{extension}")),
            None => dir.join(format!("{}.{extension}", output.name)),
        };
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        tokio::fs::write(&path, &data)
            .await
            .map_err(|e| Done::failed("write", format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Follows a job's Server-Sent Events to its final state (polling if the stream breaks).
async fn wait(client: &Client, id: &str) -> Result<JobView, ClientError> {
    loop {
        let response = client
            .send(client.request(Method::GET, &format!("/v1/jobs/{id}/events")))
            .await?;
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data = event.lines().find_map(|l| l.strip_prefix("data: "));
                if let Some(job) = data.and_then(|d| serde_json::from_str::<JobView>(d).ok()) {
                    if job.status.is_terminal() {
                        return Ok(job);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/avif" => "avif",
        "image/gif" => "gif",
        "text/vtt" => "vtt",
        _ => "bin",
    }
}

pub(super) fn load_spec(arg: &str) -> Result<String, ClientError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ClientError::Local(format!("cannot read {path}: {e}")))?,
        None => arg.to_owned(),
    };
    // Checked here too, so a typo fails before anything is uploaded.
    pipeline::spec::Spec::from_json(&text)
        .map_err(|e| ClientError::Local(format!("bad --spec: {e}")))?;
    Ok(text)
}

/// Files named, and every file under folders named (hidden ones skipped), in order.
pub(super) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ClientError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            let mut pending = vec![path.clone()];
            while let Some(dir) = pending.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|e| {
                    ClientError::Local(format!("cannot read {}: {e}", dir.display()))
                })?;
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    {
                        continue;
                    }
                    if p.is_dir() {
                        pending.push(p);
                    } else if p.is_file() {
                        found.push(p);
                    }
                }
            }
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(ClientError::Local(format!(
                "{}: no such file or folder",
                path.display()
            )));
        }
    }
    Ok(files)
}
