//! `worker transform`: the engine on local files, with no Redis and no storage (API.md § Commands
//! beside the services).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context as _;
use pipeline::engine::{self, EngineError, Limits, Rendition};
use pipeline::failure::FailureCode;
use pipeline::spec::Spec;
use pipeline::video::{process_video, VideoLimits};
use rayon::prelude::*;
use serde_json::{json, Value};

/// `worker transform` arguments.
#[derive(Debug, clap::Args)]
pub struct TransformArgs {
    /// The transform spec: JSON text, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub spec: String,
    /// Outputs go to DIR/<input stem>/<output name>.<ext>.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Engine threads [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_WORKER_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Refuse images (and outputs) with more pixels than this, judged from the header.
    #[arg(
        long,
        env = "IMAGEPIPE_MAX_PIXELS",
        default_value_t = 100_000_000,
        value_name = "N"
    )]
    pub max_pixels: u64,
    /// Input images.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs the command: one JSON line per input on stdout, in input order. Exits 0 when every input
/// was handled (failed ones included), 2 for a bad spec, 1 when the output directory is unusable.
pub fn run(args: TransformArgs) -> ExitCode {
    let spec = match load_spec(&args.spec) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("worker transform: bad --spec: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!(
            "worker transform: cannot create {}: {e}",
            args.out.display()
        );
        return ExitCode::from(1);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("engine-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("worker transform: cannot start {threads} threads: {e}");
            return ExitCode::from(1);
        }
    };
    let limits = Limits {
        max_pixels: args.max_pixels,
        ..Limits::default()
    };
    let dirs = output_dirs(&args.out, &args.files);

    // Inputs run in parallel; lines are printed in input order as soon as each is next.
    let (sender, receiver) = mpsc::channel::<(usize, Value)>();
    let files = &args.files;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            pool.install(|| {
                files
                    .par_iter()
                    .enumerate()
                    .for_each_with(sender, |sender, (i, file)| {
                        let line = transform_one(file, &dirs[i], &spec, &limits);
                        let _ = sender.send((i, line));
                    });
            });
        });
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (i, line) in receiver {
            pending.insert(i, line);
            while let Some(line) = pending.remove(&next) {
                println!("{line}");
                next += 1;
            }
        }
    });
    ExitCode::SUCCESS
}

fn load_spec(arg: &str) -> Result<Spec, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => arg.to_owned(),
    };
    Spec::from_json(&text).map_err(|e| e.to_string())
}

/// `DIR/<stem>` per input; a stem seen before gets `-2`, `-3`... so no input overwrites another.
/// (`imagepipe submit` lays its downloads out the same way.)
pub fn output_dirs(out: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    files
        .iter()
        .map(|file| {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty() && s != "." && s != "..")
                .unwrap_or_else(|| "input".to_owned());
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

fn transform_one(file: &Path, dir: &Path, spec: &Spec, limits: &Limits) -> Value {
    let input = file.display().to_string();
    match try_transform(file, dir, spec, limits) {
        Ok(mut line) => {
            line["input"] = json!(input);
            line
        }
        Err((code, message)) => json!({
            "input": input,
            "error": {"code": code, "message": message},
        }),
    }
}

fn try_transform(
    file: &Path,
    dir: &Path,
    spec: &Spec,
    limits: &Limits,
) -> Result<Value, (FailureCode, String)> {
    let storage = |e: anyhow::Error| (FailureCode::StorageError, format!("{e:#}"));
    let engine = |e: EngineError| (e.code(), e.to_string());
    let head = read_head(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(storage)?;
    let (outputs, placeholder, times) = match engine::sniff(&head) {
        engine::Sniffed::Video(container) => {
            let video_limits = VideoLimits {
                max_pixels: limits.max_pixels,
                max_frames: limits.max_frames,
                ..VideoLimits::default()
            };
            let sprite = pipeline::spec::SPRITE_OUTPUT;
            let mut video =
                process_video(file, container, spec, limits, &video_limits, &(), sprite)
                    .map_err(engine)?;
            (video.renditions(), video.placeholder, video.times)
        }
        _ => {
            let bytes = std::fs::read(file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(storage)?;
            let processed = engine::process(&bytes, spec, limits, &()).map_err(engine)?;
            (processed.outputs, processed.placeholder, Vec::new())
        }
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(storage)?;
    let written = outputs
        .iter()
        .map(|output| write_output(dir, output, &times))
        .collect::<anyhow::Result<Vec<Value>>>()
        .map_err(storage)?;
    let mut line = json!({ "input": Value::Null, "outputs": written });
    if let Some(placeholder) = placeholder {
        line["placeholder"] = json!(placeholder);
    }
    Ok(line)
}

/// The first bytes of a file, enough to tell what it is.
fn read_head(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(file)?
        .take(512)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Writes one output: `DIR/NAME.EXT`, or `DIR/NAME/FRAME.EXT` for a video's frames.
fn write_output(dir: &Path, output: &Rendition, times: &[f64]) -> anyhow::Result<Value> {
    let extension = output.media.extension();
    let path = match output.frame {
        Some(frame) => {
            let folder = dir.join(&output.name);
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            folder.join(format!("{frame}.{extension}"))
        }
        None => dir.join(format!("{}.{extension}", output.name)),
    };
    std::fs::write(&path, &output.data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut line = json!({
        "name": output.name,
        "width": output.width,
        "height": output.height,
        "bytes": output.data.len(),
        "path": path.display().to_string(),
    });
    if let Some(frame) = output.frame {
        line["frame"] = json!(frame);
        if let Some(t) = times.get(frame as usize) {
            line["t"] = json!(t);
        }
    }
    Ok(line)
}
