//! Video in: what a file holds ([`probe`], ffprobe) and its frames as displayed ([`FrameReader`],
//! ffmpeg) — rotation and sample aspect applied — chosen by the spec's `video.frames`. Each
//! decoder is a child process with a memory cap, the job's deadline, a no-progress watchdog,
//! no input but its file, and no life beyond its worker ([`child`]). Frames come back as RGB
//! buffers for the engine's frame path.

pub mod child;
mod choose;
mod error;
mod extract;
mod poster;
mod probe;
mod process;

use std::path::PathBuf;
use std::time::Duration;

pub use choose::{choose_times, thin};
pub use error::VideoError;
pub use extract::{Frame, FrameReader, PrimedDecoders};
pub use poster::{poster, score};
pub use probe::{probe, VideoInfo};
pub use process::{process_video, ProcessedVideo};

/// Bounds on one video job's decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoLimits {
    /// Largest frame (as displayed) in pixels.
    pub max_pixels: u64,
    /// Longest video taken.
    pub max_duration: Duration,
    /// Address space of each decoder process, in bytes.
    pub memory: u64,
    /// A decoder that writes nothing for this long is killed.
    pub stall: Duration,
    /// Most frames a job takes (`--max-frames`).
    pub max_frames: usize,
}

impl Default for VideoLimits {
    fn default() -> Self {
        VideoLimits {
            max_pixels: 100_000_000,
            max_duration: Duration::from_secs(4 * 3600),
            memory: 2 << 30,
            stall: Duration::from_secs(30),
            max_frames: 2000,
        }
    }
}

impl VideoLimits {
    /// What each ffprobe or ffmpeg child runs under.
    pub fn child(&self) -> child::ChildLimits {
        child::ChildLimits {
            memory: self.memory,
            stall: self.stall,
        }
    }
}

/// A video to read: its file and what the probe found.
#[derive(Debug, Clone)]
pub struct Video {
    pub path: PathBuf,
    pub info: VideoInfo,
}
