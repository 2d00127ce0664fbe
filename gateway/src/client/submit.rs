//! `imagepipe submit`: files and folders in, every output out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use super::{Client, ClientError};

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

pub async fn run(client: &Client, args: SubmitArgs) -> Result<ExitCode, ClientError> {
    let spec = load_spec(&args.spec)?;
    let files = expand(&args.paths)?;
    if files.is_empty() {
        return Err(ClientError::Local("no files to send".into()));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| ClientError::Local(format!("cannot create {}: {e}", args.out.display())))?;
    let dirs = output_dirs(&args.out, &files);

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
        .expect("template")
        .progress_chars("=> ");
    let bar = |name: &str| {
        let bar = bars.add(ProgressBar::new(files.len() as u64));
        bar.set_style(style.clone());
        bar.set_prefix(name.to_owned());
        bar
    };
    let (uploaded, processed, downloaded) = (bar("uploaded"), bar("processed"), bar("downloaded"));

    let results: Vec<(PathBuf, Done)> =
        futures::stream::iter(files.iter().zip(&dirs).map(|(file, dir)| {
            let (client, spec, uploaded, processed, downloaded) = (
                client.clone(),
                spec.clone(),
                uploaded.clone(),
                processed.clone(),
                downloaded.clone(),
            );
            async move {
                let done = one(
                    &client,
                    file,
                    dir,
                    &spec,
                    args.timeout,
                    &uploaded,
                    &processed,
                    &downloaded,
                )
                .await;
                (file.clone(), done)
            }
        }))
        .buffered(args.concurrency.max(1))
        .collect()
        .await;
    for bar in [&uploaded, &processed, &downloaded] {
        bar.finish();
    }

    let ok = results
        .iter()
        .filter(|(_, d)| matches!(d, Done::Ok { .. }))
        .count();
    let outputs: usize = results
        .iter()
        .map(|(_, d)| {
            if let Done::Ok { outputs } = d {
                *outputs
            } else {
                0
            }
        })
        .sum();
    let mut codes: HashMap<&str, usize> = HashMap::new();
    for (file, done) in &results {
        if let Done::Failed { code, message } = done {
            *codes.entry(code.as_str()).or_default() += 1;
            eprintln!("failed: {}: {code}: {message}", file.display());
        }
    }
    let failed = results.len() - ok;
    let mut summary = format!(
        "{} files: {ok} ok ({outputs} outputs in {}), {failed} failed",
        results.len(),
        args.out.display()
    );
    if !codes.is_empty() {
        let mut codes: Vec<_> = codes.into_iter().collect();
        codes.sort();
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        summary.push_str(&format!(" ({})", list.join(", ")));
    }
    println!("{summary}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[allow(clippy::too_many_arguments)]
async fn one(
    client: &Client,
    file: &Path,
    dir: &Path,
    spec: &str,
    timeout: Duration,
    uploaded: &ProgressBar,
    processed: &ProgressBar,
    downloaded: &ProgressBar,
) -> Done {
    let failed = |code: &str, message: String| Done::Failed {
        code: code.to_owned(),
        message,
    };
    let bytes = match tokio::fs::read(file).await {
        Ok(bytes) => bytes,
        Err(e) => return failed("unreadable", e.to_string()),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        )
        .text("spec", spec.to_owned());
    let accepted = client
        .json(client.request(Method::POST, "/v1/jobs").multipart(form))
        .await;
    uploaded.inc(1);
    let id = match accepted {
        Ok(body) => body["id"].as_str().unwrap_or_default().to_owned(),
        Err(ClientError::Api { status, detail }) => {
            return failed(&format!("http_{status}"), detail)
        }
        Err(e) => return failed("request", e.to_string()),
    };
    let job = match tokio::time::timeout(timeout, wait(client, &id)).await {
        Ok(Ok(job)) => job,
        Ok(Err(e)) => return failed("request", e.to_string()),
        Err(_) => {
            return failed(
                "timeout",
                format!("job {id} did not finish within {timeout:?}"),
            )
        }
    };
    processed.inc(1);
    if job["status"] != "succeeded" {
        let code = job["error"]["code"]
            .as_str()
            .unwrap_or(job["status"].as_str().unwrap_or("failed"));
        let message = job["error"]["message"].as_str().unwrap_or("").to_owned();
        return failed(code, message);
    }
    let outputs = job["outputs"].as_array().cloned().unwrap_or_default();
    if let Err(e) = tokio::fs::create_dir_all(dir).await {
        return failed("write", format!("cannot create {}: {e}", dir.display()));
    }
    for output in &outputs {
        let url = output["url"].as_str().unwrap_or_default();
        let response = match client.send(client.request(Method::GET, url)).await {
            Ok(response) => response,
            Err(e) => return failed("download", e.to_string()),
        };
        // S3 storage answers with a redirect to a presigned URL; reqwest follows it.
        let data = match response.bytes().await {
            Ok(data) => data,
            Err(e) => return failed("download", e.to_string()),
        };
        let extension = extension(output["content_type"].as_str().unwrap_or(""));
        let name = output["name"].as_str().unwrap_or("output");
        let path = match output["frame"].as_u64() {
            Some(frame) => dir.join(name).join(format!("{frame}.{extension}")),
            None => dir.join(format!("{name}.{extension}")),
        };
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        if let Err(e) = tokio::fs::write(&path, &data).await {
            return failed("write", format!("cannot write {}: {e}", path.display()));
        }
    }
    downloaded.inc(1);
    Done::Ok {
        outputs: outputs.len(),
    }
}

/// Follows a job's Server-Sent Events to its final state (polling if the stream breaks).
async fn wait(client: &Client, id: &str) -> Result<Value, ClientError> {
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
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if let Ok(job) = serde_json::from_str::<Value>(data) {
                        if matches!(
                            job["status"].as_str(),
                            Some("succeeded" | "failed" | "cancelled")
                        ) {
                            return Ok(job);
                        }
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

/// `DIR/<stem>` per file; a stem seen before gets `-2`, `-3`...
fn output_dirs(out: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    files
        .iter()
        .map(|file| {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let count = seen.entry(stem.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                out.join(stem)
            } else {
                out.join(format!("{stem}-{count}"))
            }
        })
        .collect()
}
