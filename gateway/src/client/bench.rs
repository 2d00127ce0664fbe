//! `imagepipe bench`: end-to-end load on a running deployment. Uploads real photos over HTTP
//! (closed loop with C clients, or open loop at a given rate), waits for every job, and reports
//! throughput and the latency from acceptance to `succeeded` (server timestamps). With
//! `--compare-with WORKER`, runs `worker transform` on the same files and threads in the same
//! run and prints the ratio.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use pipeline::job::JobStatus;
use pipeline::view::JobView;
use reqwest::Method;

use super::submit::{expand, load_spec};
use super::{Client, ClientError};
use crate::intake::Accepted;

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
    let load = Load::read(&args)?;
    let cpu = CpuWatch::start(&args.cpu_of)?;
    let started = Instant::now();
    let (ids, refused) = load.upload_all(client, &args, started).await;
    let upload_secs = started.elapsed().as_secs_f64();
    if args.uploads_only {
        let mean = load.images.iter().map(|i| i.len()).sum::<usize>() / load.images.len();
        println!(
            "uploads: {} accepted, {refused} refused in {upload_secs:.2} s: {:.0} accepted uploads/s \
             ({} clients, mean upload {} KB)",
            ids.len(),
            ids.len() as f64 / upload_secs,
            args.concurrency,
            mean / 1000
        );
        println!("  CPU ms/upload  {}", cpu.report(args.count));
        return Ok(exit_code(refused == 0));
    }
    if let Some(command) = &args.after_uploads {
        run_shell(command).await?;
    }
    let jobs = wait_for_all(client, &ids, args.timeout).await?;
    let figures = Figures::of(&jobs, args.after_uploads.is_some(), started);
    figures.print(&args, &load, ids.len(), refused, upload_secs);
    println!("  CPU ms/image  {}", cpu.report(args.count));
    if let Some(worker) = &args.compare_with {
        let engine_rate = engine_alone(worker, &args, &load).await?;
        println!(
            "engine alone (worker transform --threads {}): {engine_rate:>8.1} images/s",
            args.threads
        );
        println!("pipeline / engine: {:.2}", figures.rate() / engine_rate);
    }
    Ok(exit_code(figures.succeeded == args.count))
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The spec and the files' bytes, read once.
struct Load {
    spec: Arc<String>,
    files: Vec<PathBuf>,
    images: Vec<Arc<Vec<u8>>>,
}

impl Load {
    fn read(args: &BenchArgs) -> Result<Load, ClientError> {
        let spec = Arc::new(load_spec(&args.spec)?);
        let files = expand(&args.paths)?;
        if files.is_empty() {
            return Err(ClientError::Local("no files".into()));
        }
        let images = files
            .iter()
            .map(|f| {
                std::fs::read(f)
                    .map(Arc::new)
                    .map_err(|e| ClientError::Local(format!("{}: {e}", f.display())))
            })
            .collect::<Result<_, _>>()?;
        Ok(Load {
            spec,
            files,
            images,
        })
    }

    /// Upload number `i` (the files repeat); the new job's id.
    async fn upload(&self, client: &Client, i: usize) -> Result<String, ClientError> {
        let image = self.images[i % self.images.len()].clone();
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(image.as_ref().clone()).file_name("photo.jpg"),
            )
            .text("spec", self.spec.as_ref().clone());
        let accepted: Accepted = client
            .json(client.request(Method::POST, "/v1/jobs").multipart(form))
            .await?;
        Ok(accepted.id)
    }

    /// Every upload, closed loop with `concurrency` clients or open loop at `rate`: the ids
    /// accepted and how many were refused (the first refusal is printed).
    async fn upload_all(
        &self,
        client: &Client,
        args: &BenchArgs,
        started: Instant,
    ) -> (Vec<String>, usize) {
        let results: Vec<Result<String, ClientError>> = match args.rate {
            None => {
                futures::stream::iter((0..args.count).map(|i| self.upload(client, i)))
                    .buffer_unordered(args.concurrency.max(1))
                    .collect()
                    .await
            }
            Some(rate) => {
                let offered = (0..args.count).map(|i| async move {
                    let due = started + Duration::from_secs_f64(i as f64 / rate.max(0.001));
                    tokio::time::sleep_until(due.into()).await;
                    self.upload(client, i).await
                });
                futures::future::join_all(offered).await
            }
        };
        let refused = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            eprintln!("{refused} uploads refused, e.g.: {e}");
        }
        (
            results.into_iter().filter_map(Result::ok).collect(),
            refused,
        )
    }
}

/// CPU time of the load tool itself and of the processes named with `--cpu-of`.
struct CpuWatch {
    watched: Vec<(String, String)>,
    before: Vec<Option<f64>>,
}

impl CpuWatch {
    fn start(cpu_of: &[String]) -> Result<CpuWatch, ClientError> {
        let mut watched: Vec<(String, String)> = vec![("load tool".into(), "self".into())];
        for entry in cpu_of {
            let (name, pid) = entry.split_once('=').ok_or_else(|| {
                ClientError::Local(format!("--cpu-of {entry}: expected NAME=PID"))
            })?;
            watched.push((name.to_owned(), pid.to_owned()));
        }
        let before = watched.iter().map(|(_, pid)| cpu_seconds(pid)).collect();
        Ok(CpuWatch { watched, before })
    }

    /// `name ms  name ms ...`: CPU milliseconds per image since the start.
    fn report(&self, count: usize) -> String {
        self.watched
            .iter()
            .zip(&self.before)
            .filter_map(|((name, pid), before)| {
                let used = cpu_seconds(pid)? - (*before)?;
                Some(format!("{name} {:.2}", used * 1000.0 / count.max(1) as f64))
            })
            .collect::<Vec<_>>()
            .join("  ")
    }
}

async fn run_shell(command: &str) -> Result<(), ClientError> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .map_err(|e| ClientError::Local(format!("cannot run {command}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ClientError::Local(format!("{command}: {status}")))
    }
}

/// Waits for the newest job first, one request at a time: jobs of one priority run in order,
/// so by the time it ends nearly all have, and the load tool stays off the CPU the workers are
/// being measured on. Then reads every record (the figures come from the server's timestamps,
/// so reading late changes nothing), waiting on any still running.
async fn wait_for_all(
    client: &Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<JobView>, ClientError> {
    let waited = tokio::time::timeout(timeout, async {
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
    waited.unwrap_or_else(|_| {
        Err(ClientError::Local(format!(
            "the jobs did not all end within {}",
            humantime::format_duration(timeout)
        )))
    })
}

/// Throughput and latency of a run, from the server's timestamps.
struct Figures {
    succeeded: usize,
    failed: usize,
    /// Seconds from the first acceptance (drain mode: the first start) to the last success.
    span: f64,
    /// Accepted → succeeded, ms, ascending.
    latencies: Vec<f64>,
}

impl Figures {
    fn of(jobs: &[JobView], drain: bool, started: Instant) -> Figures {
        let time = |t: &str| humantime::parse_rfc3339(t).ok();
        let ok: Vec<&JobView> = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .collect();
        let mut latencies: Vec<f64> = ok
            .iter()
            .filter_map(|j| {
                let finished = time(j.finished_at.as_deref()?)?;
                Some(ms_between(time(&j.created_at)?, finished))
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let first = jobs
            .iter()
            .filter_map(|j| match drain {
                true => time(j.started_at.as_deref()?),
                false => time(&j.created_at),
            })
            .min();
        let last = ok
            .iter()
            .filter_map(|j| time(j.finished_at.as_deref()?))
            .max();
        let span = match (first, last) {
            (Some(a), Some(b)) => ms_between(a, b) / 1000.0,
            _ => started.elapsed().as_secs_f64(),
        };
        Figures {
            succeeded: ok.len(),
            failed: jobs.len() - ok.len(),
            span,
            latencies,
        }
    }

    /// Images per second.
    fn rate(&self) -> f64 {
        self.succeeded as f64 / self.span.max(1e-9)
    }

    fn percentile(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or(0.0)
    }

    fn print(
        &self,
        args: &BenchArgs,
        load: &Load,
        accepted: usize,
        refused: usize,
        upload_secs: f64,
    ) {
        let drain = args.after_uploads.is_some();
        let mode = match args.rate {
            Some(rate) => format!("open loop at {rate} images/s"),
            None if drain => format!(
                "drain: uploaded by {} clients first, then the workers started",
                args.concurrency
            ),
            None => format!("closed loop, {} clients", args.concurrency),
        };
        println!(
            "end to end: {} uploads of {} files, {mode}",
            args.count,
            load.files.len()
        );
        println!(
            "  succeeded {}  failed {}  refused {refused}",
            self.succeeded, self.failed
        );
        println!(
            "  throughput  {:>8.1} images/s   (first {} to last success, server clock)",
            self.rate(),
            if drain { "start" } else { "acceptance" }
        );
        println!(
            "  uploads     {:>8.1} accepted/s",
            accepted as f64 / upload_secs.max(1e-9)
        );
        println!(
            "  latency ms  p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}   (accepted -> succeeded)",
            self.percentile(0.50),
            self.percentile(0.95),
            self.percentile(0.99),
            self.latencies.last().copied().unwrap_or(0.0)
        );
    }
}

/// `worker transform` on the same files, repeated to the same count, with the same threads:
/// images per second.
async fn engine_alone(worker: &Path, args: &BenchArgs, load: &Load) -> Result<f64, ClientError> {
    let out = std::env::temp_dir().join(format!("imagepipe-bench-{}", std::process::id()));
    let inputs: Vec<PathBuf> = (0..args.count)
        .map(|i| load.files[i % load.files.len()].clone())
        .collect();
    let started = Instant::now();
    let status = tokio::process::Command::new(worker)
        .arg("transform")
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--spec")
        .arg(load.spec.as_ref())
        .arg("--out")
        .arg(&out)
        .args(&inputs)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| ClientError::Local(format!("cannot run {}: {e}", worker.display())))?;
    let rate = inputs.len() as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);
    if !status.success() {
        return Err(ClientError::Local(format!(
            "worker transform failed: {status}"
        )));
    }
    Ok(rate)
}

/// The job's record once it has ended, polling every `interval`.
async fn wait_for_end(
    client: &Client,
    id: &str,
    interval: Duration,
) -> Result<JobView, ClientError> {
    loop {
        let job = client.job(id).await?;
        if job.status.is_terminal() {
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
