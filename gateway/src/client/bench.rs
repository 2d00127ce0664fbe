//! `imagepipe bench`: end-to-end load on a running deployment. Uploads real photos over HTTP
//! (closed loop with C clients, or open loop at a given rate), waits for every job, and reports
//! throughput and the latency from acceptance to `succeeded` (server timestamps). With
//! `--compare-with WORKER`, runs `worker transform` on the same files and threads in the same
//! run and prints the ratio.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::submit::{expand, load_spec};
use super::{Client, ClientError};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The transform spec: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub spec: String,
    /// Uploads in all (the files are repeated to reach it).
    #[arg(long, default_value_t = 500)]
    pub count: usize,
    /// Concurrent clients (closed loop: each uploads its next file as soon as the last is accepted).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Open loop instead: offer this many uploads per second, whatever the responses.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Also time `worker transform` (this binary) on the same files...
    #[arg(long, value_name = "WORKER")]
    pub compare_with: Option<PathBuf>,
    /// ...with this many threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Only time the uploads (202s per second), do not wait for the jobs: measures the
    /// gateway's acceptance rate (run it without workers).
    #[arg(long)]
    pub uploads_only: bool,
    /// Give up (exit 1) when the jobs have not all ended this long after the last upload.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Drain mode: run this shell command once every upload is accepted (typically starting
    /// the workers, which were not running during the uploads), and time the jobs from the
    /// first start to the last success: the workers' own throughput on a full queue, with
    /// nothing else competing for the CPU.
    #[arg(long, value_name = "SHELL COMMAND")]
    pub after_uploads: Option<String>,
    /// Also report the CPU time per image of these processes over the run (Linux, from
    /// /proc): `gateway=PID`, repeated. The load tool's own is always reported.
    #[arg(long = "cpu-of", value_name = "NAME=PID")]
    pub cpu_of: Vec<String>,
    /// Files, or folders of files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub async fn run(client: &Client, args: BenchArgs) -> Result<ExitCode, ClientError> {
    let spec = Arc::new(load_spec(&args.spec)?);
    let files = expand(&args.paths)?;
    if files.is_empty() {
        return Err(ClientError::Local("no files".into()));
    }
    let images: Vec<Arc<Vec<u8>>> = files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(Arc::new)
                .map_err(|e| ClientError::Local(format!("{}: {e}", f.display())))
        })
        .collect::<Result<_, _>>()?;
    let upload = |i: usize| {
        let (client, spec, image) = (
            client.clone(),
            spec.clone(),
            images[i % images.len()].clone(),
        );
        async move {
            let form = reqwest::multipart::Form::new()
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(image.as_ref().clone()).file_name("photo.jpg"),
                )
                .text("spec", spec.as_ref().clone());
            let body = client
                .json(client.request(Method::POST, "/v1/jobs").multipart(form))
                .await?;
            Ok::<String, ClientError>(body["id"].as_str().unwrap_or_default().to_owned())
        }
    };

    let mut watched: Vec<(String, String)> = vec![("load tool".into(), "self".into())];
    for entry in &args.cpu_of {
        let (name, pid) = entry
            .split_once('=')
            .ok_or_else(|| ClientError::Local(format!("--cpu-of {entry}: expected NAME=PID")))?;
        watched.push((name.to_owned(), pid.to_owned()));
    }
    let cpu_before: Vec<Option<f64>> = watched.iter().map(|(_, pid)| cpu_seconds(pid)).collect();
    let started = Instant::now();
    let ids: Vec<Result<String, ClientError>> = match args.rate {
        None => {
            futures::stream::iter((0..args.count).map(upload))
                .buffer_unordered(args.concurrency.max(1))
                .collect()
                .await
        }
        Some(rate) => {
            let mut tasks = Vec::with_capacity(args.count);
            for i in 0..args.count {
                let due = started + Duration::from_secs_f64(i as f64 / rate.max(0.001));
                tokio::time::sleep_until(due.into()).await;
                tasks.push(tokio::spawn(upload(i)));
            }
            let mut ids = Vec::with_capacity(tasks.len());
            for task in tasks {
                ids.push(
                    task.await
                        .unwrap_or_else(|e| Err(ClientError::Local(e.to_string()))),
                );
            }
            ids
        }
    };
    let upload_secs = started.elapsed().as_secs_f64();
    let cpu_report = || {
        watched
            .iter()
            .zip(&cpu_before)
            .filter_map(|((name, pid), before)| {
                let used = cpu_seconds(pid)? - (*before)?;
                Some(format!(
                    "{name} {:.2}",
                    used * 1000.0 / args.count.max(1) as f64
                ))
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let refused = ids.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = ids.iter().find(|r| r.is_err()) {
        eprintln!("{refused} uploads refused, e.g.: {e}");
    }
    let ids: Vec<String> = ids.into_iter().filter_map(Result::ok).collect();
    if args.uploads_only {
        let mean = images.iter().map(|i| i.len()).sum::<usize>() / images.len();
        println!(
            "uploads: {} accepted, {refused} refused in {upload_secs:.2} s: {:.0} accepted uploads/s \
             ({} clients, mean upload {} KB)",
            ids.len(),
            ids.len() as f64 / upload_secs,
            args.concurrency,
            mean / 1000
        );
        println!("  CPU ms/upload  {}", cpu_report());
        return Ok(if refused == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    if let Some(command) = &args.after_uploads {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .await
            .map_err(|e| ClientError::Local(format!("cannot run {command}: {e}")))?;
        if !status.success() {
            return Err(ClientError::Local(format!("{command}: {status}")));
        }
    }

    // Wait for the newest job first, one request at a time: jobs of one priority run in order,
    // so by the time it ends nearly all have, and the load tool stays off the CPU the workers
    // are being measured on. Then read every record (the figures come from the server's
    // timestamps, so reading late changes nothing), waiting on any still running.
    let waited = tokio::time::timeout(args.timeout, async {
        if let Some(newest) = ids.last() {
            wait_for_end(client, newest, Duration::from_millis(100)).await?;
        }
        futures::stream::iter(
            ids.iter()
                .map(|id| wait_for_end(client, id, Duration::from_millis(50))),
        )
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
    })
    .await;
    let jobs: Vec<Value> = match waited {
        Ok(jobs) => jobs?,
        Err(_) => {
            return Err(ClientError::Local(format!(
                "the jobs did not all end within {}",
                humantime::format_duration(args.timeout)
            )))
        }
    };
    let wall = started.elapsed().as_secs_f64();

    let time = |job: &Value, field: &str| {
        job[field]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    };
    let ok: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "succeeded").collect();
    let mut latencies: Vec<f64> = ok
        .iter()
        .filter_map(|j| Some(ms_between(time(j, "created_at")?, time(j, "finished_at")?)))
        .collect();
    latencies.sort_by(f64::total_cmp);
    // From the first acceptance, or in drain mode from the first start.
    let from = if args.after_uploads.is_some() {
        "started_at"
    } else {
        "created_at"
    };
    let first = jobs.iter().filter_map(|j| time(j, from)).min();
    let last = ok.iter().filter_map(|j| time(j, "finished_at")).max();
    let span = match (first, last) {
        (Some(a), Some(b)) => ms_between(a, b) / 1000.0,
        _ => wall,
    };
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} images/s"),
        None if args.after_uploads.is_some() => format!(
            "drain: uploaded by {} clients first, then the workers started",
            args.concurrency
        ),
        None => format!("closed loop, {} clients", args.concurrency),
    };
    println!(
        "end to end: {} uploads of {} files, {mode}",
        args.count,
        files.len()
    );
    println!(
        "  succeeded {}  failed {}  refused {refused}",
        ok.len(),
        jobs.len() - ok.len()
    );
    println!(
        "  throughput  {:>8.1} images/s   (first {} to last success, server clock)",
        ok.len() as f64 / span.max(1e-9),
        if args.after_uploads.is_some() {
            "start"
        } else {
            "acceptance"
        }
    );
    println!(
        "  uploads     {:>8.1} accepted/s",
        ids.len() as f64 / upload_secs.max(1e-9)
    );
    println!(
        "  latency ms  p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}   (accepted -> succeeded)",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    let pipeline_rate = ok.len() as f64 / span.max(1e-9);
    println!("  CPU ms/image  {}", cpu_report());

    if let Some(worker) = &args.compare_with {
        let out = std::env::temp_dir().join(format!("imagepipe-bench-{}", std::process::id()));
        let inputs: Vec<PathBuf> = (0..args.count)
            .map(|i| files[i % files.len()].clone())
            .collect();
        let t = Instant::now();
        let status = tokio::process::Command::new(worker)
            .arg("transform")
            .arg("--threads")
            .arg(args.threads.to_string())
            .arg("--spec")
            .arg(spec.as_ref())
            .arg("--out")
            .arg(&out)
            .args(&inputs)
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| ClientError::Local(format!("cannot run {}: {e}", worker.display())))?;
        let engine_rate = inputs.len() as f64 / t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&out);
        if !status.success() {
            return Err(ClientError::Local(format!(
                "worker transform failed: {status}"
            )));
        }
        println!(
            "engine alone (worker transform --threads {}): {engine_rate:>8.1} images/s",
            args.threads
        );
        println!("pipeline / engine: {:.2}", pipeline_rate / engine_rate);
    }
    Ok(if ok.len() == args.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The job's record once it has ended, polling every `interval`.
async fn wait_for_end(client: &Client, id: &str, interval: Duration) -> Result<Value, ClientError> {
    loop {
        let job = client
            .json(client.request(Method::GET, &format!("/v1/jobs/{id}")))
            .await?;
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return Ok(job);
        }
        tokio::time::sleep(interval).await;
    }
}

/// User + system CPU seconds a process (or `self`) has used so far, from /proc; None elsewhere.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) close with ')': utime and stime
    // are the 12th and 13th after it, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
