//! Everything the engine can refuse or fail at, each mapped once to a failure code and to
//! retry-or-abort.

use crate::failure::{Disposition, FailureCode};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("not an image: the bytes match no image format")]
    NotAnImage,
    #[error("{0} images are not supported (jpeg, png, webp and gif are)")]
    UnsupportedFormat(&'static str),
    #[error("the image is {width}x{height} ({pixels} pixels), over the limit of {limit} pixels")]
    PixelLimit {
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    #[error("output `{output}` would be {width}x{height}: {reason}")]
    OutputTooLarge {
        output: String,
        width: u64,
        height: u64,
        reason: String,
    },
    #[error("the animation has {frames} frames, over the limit of {limit} frames")]
    FrameLimit { frames: u64, limit: u64 },
    #[error("cannot decode the {format} image: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    #[error("cannot encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
    #[error("{0}")]
    BadFrames(String),
    #[error("cancelled")]
    Cancelled,
    #[error("timed out")]
    TimedOut,
    #[error("internal engine error: {0}")]
    Internal(String),
    #[error(transparent)]
    Video(crate::video::VideoError),
}

impl From<crate::video::VideoError> for EngineError {
    fn from(e: crate::video::VideoError) -> Self {
        use crate::video::VideoError;
        match e {
            VideoError::Cancelled => EngineError::Cancelled,
            VideoError::TimedOut => EngineError::TimedOut,
            other => EngineError::Video(other),
        }
    }
}

impl EngineError {
    pub fn code(&self) -> FailureCode {
        match self {
            EngineError::NotAnImage | EngineError::UnsupportedFormat(_) => {
                FailureCode::UnsupportedFormat
            }
            EngineError::PixelLimit { .. }
            | EngineError::OutputTooLarge { .. }
            | EngineError::FrameLimit { .. } => FailureCode::PixelLimit,
            EngineError::Decode { .. } | EngineError::BadFrames(_) => FailureCode::DecodeError,
            EngineError::TimedOut => FailureCode::Timeout,
            EngineError::Encode { .. } | EngineError::Cancelled | EngineError::Internal(_) => {
                FailureCode::Internal
            }
            EngineError::Video(e) => e.code(),
        }
    }

    /// Only running out of time may go better on another attempt; everything else the engine
    /// refuses would be refused again.
    pub fn disposition(&self) -> Disposition {
        match self {
            EngineError::TimedOut => Disposition::Retry,
            EngineError::Video(e) => e.disposition(),
            _ => Disposition::Abort,
        }
    }

    pub(crate) fn decode(format: &'static str, reason: impl ToString) -> Self {
        EngineError::Decode {
            format,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn encode(format: &'static str, reason: impl ToString) -> Self {
        EngineError::Encode {
            format,
            reason: reason.to_string(),
        }
    }

    /// Refuses `width` × `height` over `limit` pixels.
    pub fn check_pixels(width: u64, height: u64, limit: u64) -> Result<(), Self> {
        let pixels = width.saturating_mul(height);
        if pixels > limit {
            return Err(EngineError::PixelLimit {
                width,
                height,
                pixels,
                limit,
            });
        }
        Ok(())
    }
}

/// Text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
