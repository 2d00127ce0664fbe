//! Decoder processes that cannot outlive their worker or take it down: each runs under
//! `setpriv --pdeathsig KILL` (killed when its parent dies, SIGKILL included) and
//! `prlimit --as` (a memory cap), with nothing on stdin but what it is given ([`prime`]: a
//! child started ahead of its work, loaded and waiting for its instructions, so that the tens of
//! milliseconds ffmpeg spends loading its libraries overlap other work). The parent-death signal
//! fires when the *thread* that forked exits, so every child is spawned by one long-lived
//! thread, never by a pool thread that may come and go. No `unsafe` code is needed for either.
//!
//! While a child runs, its caller's `stop` is polled and the output is watched: a child that
//! writes nothing for the stall limit, or that its caller stops (cancel, deadline, shutdown), is
//! killed at once.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Interrupt;

/// How often a running child's caller is asked whether to stop.
const POLL: Duration = Duration::from_millis(20);
/// The most one round of the watch counts towards a stall: a longer gap between rounds is a
/// pause of the machine or of the watching thread, not the child's.
const MAX_POLL_GAP: Duration = Duration::from_secs(1);

/// What a finished child wrote.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Empty when the output was streamed.
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// The caller stopped it once it had what it wanted.
    pub stopped_early: bool,
}

/// Why a child did not finish by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildError {
    /// It could not be started (the program is missing, say).
    Spawn(String),
    /// It wrote nothing for this long and was killed.
    Stalled(Duration),
    /// Its caller stopped it.
    Stopped(Interrupt),
}

/// Limits a child runs under.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    /// Address space, bytes.
    pub memory: u64,
    /// No output for this long: killed.
    pub stall: Duration,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The one thread children are forked from, alive as long as the process.
static SPAWNER: LazyLock<Mutex<mpsc::Sender<SpawnRequest>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("decoder-spawner".into())
        .spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })
        .expect("the decoder spawner thread starts");
    Mutex::new(tx)
});

fn spawn(command: Command) -> std::io::Result<Child> {
    let (reply, answer) = mpsc::channel();
    SPAWNER
        .lock()
        .expect("spawner lock")
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the decoder spawner is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the decoder spawner is gone"))?
}

/// The command line: `setpriv --pdeathsig KILL -- prlimit --as=N -- PROGRAM ARGS`, with
/// `stdin` (nothing, or a pipe for a primed child).
fn limited(program: &str, args: &[OsString], limits: &ChildLimits, stdin: Stdio) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--pdeathsig", "KILL", "--", "prlimit"])
        .arg(format!("--as={}", limits.memory))
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `program` with `args` to its end under `limits`; `stop` is asked every few
/// milliseconds and ends it early. Blocks: call it from a thread that may block.
pub fn run(
    program: &str,
    args: &[OsString],
    limits: &ChildLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<Finished, ChildError> {
    let mut stdout = Vec::new();
    let mut finished = run_streaming(program, args, limits, stop, &mut |chunk| {
        stdout.extend_from_slice(chunk);
        Flow::More
    })?;
    finished.stdout = stdout;
    Ok(finished)
}

/// Whether a streaming caller wants more of the child's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// Enough: the child is stopped (and that is no failure).
    Enough,
}

/// Like [`run`], but hands the child's stdout to `sink` as it arrives (on the calling thread)
/// instead of collecting it: a decoder's frames can be used while it decodes the next ones.
/// Time spent in `sink` is not held against the child by the stall watchdog.
pub fn run_streaming(
    program: &str,
    args: &[OsString],
    limits: &ChildLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
    sink: &mut dyn FnMut(&[u8]) -> Flow,
) -> Result<Finished, ChildError> {
    let child = spawn(limited(program, args, limits, Stdio::null()))
        .map_err(|e| ChildError::Spawn(format!("{program}: {e}")))?;
    follow(child, limits, stop, sink)
}

/// A child started before its input was known: loading, or waiting on stdin for what to do.
/// Killed if dropped unused.
pub struct Primed {
    child: Option<Child>,
    limits: ChildLimits,
}

/// Starts `program` with `args` under `limits`, its stdin a pipe that [`Primed::run_streaming`]
/// writes to.
pub fn prime(program: &str, args: &[OsString], limits: &ChildLimits) -> Result<Primed, ChildError> {
    let child = spawn(limited(program, args, limits, Stdio::piped()))
        .map_err(|e| ChildError::Spawn(format!("{program}: {e}")))?;
    Ok(Primed {
        child: Some(child),
        limits: *limits,
    })
}

impl Primed {
    /// Gives the child `input` on stdin (then closes it) and follows it as [`run_streaming`]
    /// does; the stall watchdog counts from now.
    pub fn run_streaming(
        mut self,
        input: &[u8],
        stop: &dyn Fn() -> Option<Interrupt>,
        sink: &mut dyn FnMut(&[u8]) -> Flow,
    ) -> Result<Finished, ChildError> {
        let mut child = self.child.take().expect("a primed child runs once");
        if let Some(mut stdin) = child.stdin.take() {
            // A few KiB at most: the pipe's buffer holds it, so this never waits on the child.
            // A child that died meanwhile refuses the write; how it ended is read below.
            let _ = stdin.write_all(input);
        }
        follow(child, &self.limits, stop, sink)
    }
}

impl Drop for Primed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Feeds a started child's stdout to `sink` until it ends, under the stall watchdog and `stop`,
/// and collects its exit and stderr.
fn follow(
    mut child: Child,
    limits: &ChildLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
    sink: &mut dyn FnMut(&[u8]) -> Flow,
) -> Result<Finished, ChildError> {
    // Bytes the child has written to stderr (ffmpeg's progress lines among them).
    let progress = Arc::new(AtomicU64::new(0));
    let (chunks, stdout) = child.stdout.take().map(forward).unzip();
    let stderr = child.stderr.take().map(|err| drain(err, progress.clone()));
    let watch = Watch {
        progress: &progress,
        stall: limits.stall,
        stop,
    };
    let outcome = watch.pump(&mut child, chunks.as_ref(), sink);
    if !matches!(outcome, Ok(Ended::Exited)) {
        let _ = child.kill();
    }
    let status = child.wait();
    drop(chunks);
    if let Some(thread) = stdout {
        let _ = thread.join();
    }
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let stopped_early = matches!(outcome?, Ended::Early);
    Ok(Finished {
        status: status.map_err(|e| ChildError::Spawn(e.to_string()))?,
        stdout: Vec::new(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        stopped_early,
    })
}

enum Ended {
    Exited,
    /// The caller had enough.
    Early,
}

/// What a running child is watched against.
struct Watch<'a> {
    progress: &'a AtomicU64,
    stall: Duration,
    stop: &'a dyn Fn() -> Option<Interrupt>,
}

impl Watch<'_> {
    /// Feeds stdout to `sink` until it ends and the child exits, stopping the child when asked
    /// to or when it stalls.
    fn pump(
        &self,
        child: &mut Child,
        chunks: Option<&mpsc::Receiver<Vec<u8>>>,
        sink: &mut dyn FnMut(&[u8]) -> Flow,
    ) -> Result<Ended, ChildError> {
        let mut open = chunks;
        // Time without progress, counted only while this loop runs: a pause of the whole
        // machine (a frozen VM: one of ~10 s was measured here) or of this thread is no stall
        // of the child's.
        let (mut idle, mut tick) = (Duration::ZERO, Instant::now());
        let mut written = self.progress.load(Ordering::Relaxed);
        loop {
            if let Some(interrupt) = (self.stop)() {
                return Err(ChildError::Stopped(interrupt));
            }
            let now = Instant::now();
            idle += (now - tick).min(MAX_POLL_GAP);
            tick = now;
            let progress = self.progress.load(Ordering::Relaxed);
            if progress != written {
                (written, idle) = (progress, Duration::ZERO);
            }
            if idle > self.stall {
                return Err(ChildError::Stalled(self.stall));
            }
            let Some(receiver) = open else {
                // Output ended: the child is exiting.
                if child
                    .try_wait()
                    .map_err(|e| ChildError::Spawn(e.to_string()))?
                    .is_some()
                {
                    return Ok(Ended::Exited);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            match receiver.recv_timeout(POLL) {
                Ok(chunk) => {
                    let flow = sink(&chunk);
                    // Time in `sink` is not the child's.
                    (idle, tick) = (Duration::ZERO, Instant::now());
                    if flow == Flow::Enough {
                        return Ok(Ended::Early);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = None,
            }
        }
    }
}

/// Reads a pipe to its end on a thread of its own, passing chunks on (a few at most in
/// flight: a slow reader holds the child back rather than filling memory).
fn forward(
    mut pipe: impl Read + Send + 'static,
) -> (mpsc::Receiver<Vec<u8>>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel(4);
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (rx, thread)
}

/// Reads a pipe to its end on a thread of its own, counting the bytes as they arrive.
fn drain(
    mut pipe: impl Read + Send + 'static,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    progress.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChildLimits = ChildLimits {
        memory: 1 << 30,
        stall: Duration::from_secs(10),
    };

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_child_runs_to_its_end_with_its_output() {
        let finished = run("echo", &args(&["hello"]), &LIMITS, &|| None).unwrap();
        assert!(finished.status.success());
        assert_eq!(finished.stdout, b"hello\n");
    }

    #[test]
    fn a_silent_child_is_killed_as_stalled_and_a_stopped_one_at_once() {
        let stall = ChildLimits {
            stall: Duration::from_millis(300),
            ..LIMITS
        };
        let started = Instant::now();
        let stalled = run("sleep", &args(&["5"]), &stall, &|| None);
        assert_eq!(stalled.unwrap_err(), ChildError::Stalled(stall.stall));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        let started = Instant::now();
        let stop =
            || (started.elapsed() > Duration::from_millis(200)).then_some(Interrupt::Cancelled);
        let stopped = run("sleep", &args(&["5"]), &LIMITS, &stop);
        assert_eq!(
            stopped.unwrap_err(),
            ChildError::Stopped(Interrupt::Cancelled)
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_primed_child_waits_for_its_input_and_an_unused_one_is_killed() {
        let primed = prime("cat", &[], &LIMITS).unwrap();
        let mut out = Vec::new();
        let finished = primed
            .run_streaming(b"a graph", &|| None, &mut |chunk| {
                out.extend_from_slice(chunk);
                Flow::More
            })
            .unwrap();
        assert!(finished.status.success());
        assert_eq!(out, b"a graph");

        let unused = prime("sleep", &args(&["30"]), &LIMITS).unwrap();
        let pid = unused.child.as_ref().map(Child::id).unwrap();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(unused);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn the_memory_cap_holds() {
        let small = ChildLimits {
            memory: 256 << 20,
            ..LIMITS
        };
        let grab = args(&["-c", "b = bytearray(512 << 20); print(len(b))"]);
        let capped = run("python3", &grab, &small, &|| None).unwrap();
        assert!(!capped.status.success(), "512 MiB under a 256 MiB cap");
        assert!(capped.stderr.contains("MemoryError"), "{}", capped.stderr);
        let roomy = run("python3", &grab, &LIMITS, &|| None).unwrap();
        assert!(roomy.status.success(), "{}", roomy.stderr);
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        match run("imagepipe-no-such-program", &[], &LIMITS, &|| None) {
            Err(ChildError::Spawn(_)) => {}
            Ok(finished) => assert!(!finished.status.success()),
            Err(other) => panic!("{other:?}"),
        }
    }
}
