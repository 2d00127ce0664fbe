//! What can go wrong with a video, each mapped once to a failure code: the file itself is at
//! fault (never worth a retry), or the decoder could not be run at all.

use std::time::Duration;

use crate::failure::{Disposition, FailureCode};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoError {
    #[error("the file holds no video stream")]
    NoVideoStream,
    #[error("the video's codec ({0}) cannot be decoded here")]
    UnsupportedCodec(String),
    #[error("the video cannot be read: {0}")]
    Damaged(String),
    #[error("the video's frames are {width}x{height} ({pixels} pixels), over the limit of {limit} pixels")]
    PixelLimit {
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    #[error("the video lasts {seconds:.1} s, over the limit of {limit} s")]
    DurationLimit { seconds: f64, limit: u64 },
    #[error("the decoder made no progress for {0:?} and was stopped")]
    Stalled(Duration),
    #[error("the decoder went over its memory limit")]
    OutOfMemory,
    #[error("the decoder cannot be run: {0}")]
    Unavailable(String),
    #[error("cancelled")]
    Cancelled,
    #[error("timed out")]
    TimedOut,
}

impl VideoError {
    pub fn code(&self) -> FailureCode {
        match self {
            VideoError::NoVideoStream | VideoError::UnsupportedCodec(_) => {
                FailureCode::UnsupportedFormat
            }
            VideoError::Damaged(_) | VideoError::Stalled(_) | VideoError::OutOfMemory => {
                FailureCode::DecodeError
            }
            VideoError::PixelLimit { .. } => FailureCode::PixelLimit,
            VideoError::DurationLimit { .. } => FailureCode::DurationLimit,
            VideoError::Unavailable(_) | VideoError::Cancelled => FailureCode::Internal,
            VideoError::TimedOut => FailureCode::Timeout,
        }
    }

    /// A file that fails fails again; a decoder that cannot be started is an operator's
    /// matter (install ffmpeg), not worth a retry either. Only running out of time may go
    /// better on another attempt.
    pub fn disposition(&self) -> Disposition {
        match self {
            VideoError::TimedOut => Disposition::Retry,
            _ => Disposition::Abort,
        }
    }
}
