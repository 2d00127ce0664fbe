//! A job as the result store keeps it: what was asked, where its input lies, and how it went.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::{ColourSpace, Container, HdrTransfer, RawLayout, SourceFormat};
use crate::failure::FailureCode;
use crate::spec::{Priority, Spec};
use crate::video::VideoInfo;

/// Job ids are UUIDv7: unique without coordination, and sorted by creation time.
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `text` looks like a job id (so it can never smuggle a path or a key pattern).
pub fn is_job_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Succeeded, failed and cancelled are final: nothing moves a job out of them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// Where a job's input lies in object storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobInput {
    /// One image.
    Image {
        key: String,
        bytes: u64,
        format: SourceFormat,
        width: u32,
        height: u32,
        /// From the header at upload; absent in records written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        colour_space: Option<ColourSpace>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hdr: Option<HdrTransfer>,
    },
    /// Encoded video frames, one object each, in order.
    Frames { keys: Vec<String>, bytes: u64 },
    /// One buffer of raw frames of the same layout.
    RawFrames {
        key: String,
        bytes: u64,
        layout: RawLayout,
        frames: u32,
    },
    /// A video file.
    Video {
        key: String,
        bytes: u64,
        container: Container,
    },
}

impl JobInput {
    /// Bytes of input, all frames together.
    pub fn bytes(&self) -> u64 {
        match self {
            JobInput::Image { bytes, .. }
            | JobInput::Frames { bytes, .. }
            | JobInput::RawFrames { bytes, .. }
            | JobInput::Video { bytes, .. } => *bytes,
        }
    }

    /// Every storage key the input occupies.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            JobInput::Image { key, .. }
            | JobInput::RawFrames { key, .. }
            | JobInput::Video { key, .. } => vec![key],
            JobInput::Frames { keys, .. } => keys.iter().map(String::as_str).collect(),
        }
    }
}

/// One stored output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame: Option<u32>,
    /// For videos: the frame's time, seconds from the first frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub t: Option<f64>,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Storage key.
    pub key: String,
    /// Strong validator of the bytes (quoted, as HTTP wants it).
    pub etag: String,
}

/// What the source is, as the job record shows it (API.md `media`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Media {
    Image {
        format: SourceFormat,
        width: u32,
        height: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        colour_space: Option<ColourSpace>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hdr: Option<HdrTransfer>,
    },
    Video(VideoInfo),
}

/// A failed job's error, as API.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: FailureCode,
    pub message: String,
}

/// What the gateway submits.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub spec: Spec,
    pub input: JobInput,
    /// The API key (its id) that owns the job; `None` when the API is open.
    pub owner: Option<String>,
    pub request_id: Option<String>,
}

/// A job record, read back from the result store.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// 0–100.
    pub progress: u8,
    pub outputs: Vec<OutputRecord>,
    pub placeholder: Option<String>,
    pub error: Option<JobError>,
    pub owner: Option<String>,
    pub spec: Spec,
    pub input: JobInput,
    pub priority: Priority,
    pub request_id: Option<String>,
    /// A cancel was asked for while the job ran; it stops at its next checkpoint.
    pub cancel_requested: bool,
    /// When a retried job becomes due again.
    pub next_attempt_at: Option<u64>,
    /// The worker (consumer) that last started it.
    pub worker: Option<String>,
    /// How delivering its webhook went (`delivered ...`, `retrying ...`, `refused: ...`).
    pub webhook: Option<String>,
    /// What the source is: read from a video by the worker, from an image's header at upload.
    pub media: Option<Media>,
}

/// A record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job record {id} is unreadable: {reason}")]
pub struct CorruptRecord {
    pub id: String,
    pub reason: String,
}

impl JobRecord {
    /// Reads the fields of a job hash. `None` for an empty hash (no such job, or expired).
    pub fn from_fields(
        id: &str,
        fields: &HashMap<String, String>,
    ) -> Result<Option<JobRecord>, CorruptRecord> {
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |reason: String| CorruptRecord {
            id: id.to_owned(),
            reason,
        };
        let get = |name: &str| {
            fields
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| -> Result<Option<u64>, CorruptRecord> {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| corrupt(format!("{name} is not a number")))
                })
                .transpose()
        };
        let json = |name: &str| get(name).ok_or_else(|| corrupt(format!("{name} is missing")));
        let status = get("status")
            .and_then(JobStatus::parse)
            .ok_or_else(|| corrupt("bad status".into()))?;
        let spec = Spec::from_json(json("spec")?).map_err(|e| corrupt(format!("spec: {e}")))?;
        let input: JobInput =
            serde_json::from_str(json("input")?).map_err(|e| corrupt(format!("input: {e}")))?;
        let outputs = match get("outputs") {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| corrupt(format!("outputs: {e}")))?
            }
            None => Vec::new(),
        };
        let error = get("error")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(format!("error: {e}")))?;
        let media = match get("media") {
            Some(text) => {
                Some(serde_json::from_str(text).map_err(|e| corrupt(format!("media: {e}")))?)
            }
            None => image_media(&input),
        };
        Ok(Some(JobRecord {
            id: id.to_owned(),
            status,
            attempts: number("attempts")?.unwrap_or(0) as u32,
            created_at: number("created_at")?.unwrap_or(0),
            started_at: number("started_at")?,
            finished_at: number("finished_at")?,
            progress: number("progress")?.unwrap_or(0).min(100) as u8,
            outputs,
            placeholder: get("placeholder").map(str::to_owned),
            error,
            owner: get("owner").map(str::to_owned),
            priority: spec.priority,
            spec,
            input,
            request_id: get("request_id").map(str::to_owned),
            cancel_requested: get("cancel").is_some(),
            next_attempt_at: number("next_attempt_at")?,
            worker: get("worker").map(str::to_owned),
            webhook: get("webhook").map(str::to_owned),
            media,
        }))
    }

    /// Seconds the job ran, from its first start to its end.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_at?.saturating_sub(self.started_at?))
    }
}

/// An image's media, from what its header said at upload.
fn image_media(input: &JobInput) -> Option<Media> {
    match input {
        JobInput::Image {
            format,
            width,
            height,
            colour_space,
            hdr,
            ..
        } => Some(Media::Image {
            format: *format,
            width: *width,
            height: *height,
            colour_space: *colour_space,
            hdr: *hdr,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_uuids_and_nothing_else() {
        let id = new_job_id();
        assert!(is_job_id(&id));
        for bad in [
            "",
            "../x",
            "0192e1c0-3c4d-7a8b-9c0d-0e1f2a3b4c5",
            "0192E1C0-3C4D-7A8B-9C0D-0E1F2A3B4C5D",
            "*",
        ] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn only_final_states_are_terminal() {
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                JobStatus::Succeeded,
                JobStatus::Failed,
                JobStatus::Cancelled
            ]
        );
        assert_eq!(JobStatus::parse("running"), Some(JobStatus::Running));
    }
}
