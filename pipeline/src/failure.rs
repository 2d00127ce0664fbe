//! What a failed job reports, shared by every subsystem: a stable code (API.md) and whether the
//! attempt is worth repeating. Each subsystem's error type maps itself onto these two, once.

use serde::{Deserialize, Serialize};

/// The `error.code` of a failed job. Users' scripts switch on these strings: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The bytes claim to be an image we read, but decoding them failed.
    DecodeError,
    /// The image (or an output it would produce) has more pixels than allowed.
    PixelLimit,
    /// Not an image, or an image format we do not read or write.
    UnsupportedFormat,
    /// The job ran past its deadline.
    Timeout,
    /// Reading or writing object storage failed.
    StorageError,
    /// A video longer than `--max-video-duration`.
    DurationLimit,
    /// Anything else: a bug, never the user's input.
    Internal,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::DecodeError => "decode_error",
            FailureCode::PixelLimit => "pixel_limit",
            FailureCode::UnsupportedFormat => "unsupported_format",
            FailureCode::Timeout => "timeout",
            FailureCode::StorageError => "storage_error",
            FailureCode::DurationLimit => "duration_limit",
            FailureCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a failed attempt may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A transient fault (I/O, timeouts): retry with backoff, up to the attempt limit.
    Retry,
    /// The input itself is at fault (bad image, limits): fail at once, never retry.
    Abort,
}
