//! A job as API.md shows it: in `GET /v1/jobs/{id}`, in events, in webhooks — and as the
//! `imagepipe` client reads it back.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::failure::FailureCode;
use crate::job::{JobRecord, JobStatus, Media};
use crate::signing::UrlSigner;

/// How the URLs in a view are made: the public origin they start with (empty for relative
/// URLs), and the signer that makes output URLs work without an API key, when signing is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub base: String,
    pub signer: Option<UrlSigner>,
}

impl Links {
    pub fn new(base: &str, signer: Option<UrlSigner>) -> Links {
        Links {
            base: base.trim_end_matches('/').to_owned(),
            signer,
        }
    }

    /// The URL of output `name` (of `frame`, for frame jobs) of job `id`, signed when signing
    /// is on.
    pub fn output(&self, id: &str, name: &str, frame: Option<u32>) -> String {
        let path = match frame {
            Some(frame) => format!("/v1/jobs/{id}/outputs/{name}?frame={frame}"),
            None => format!("/v1/jobs/{id}/outputs/{name}"),
        };
        match &self.signer {
            Some(signer) => format!(
                "{}{}",
                self.base,
                signer.sign(&path, crate::job::now_ms() / 1000)
            ),
            None => format!("{}{path}", self.base),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    pub attempts: u32,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// 0–100.
    pub progress: u8,
    pub outputs: Vec<OutputView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// Set while a cancel waits for the running job's next checkpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// When a job waiting to be retried becomes due (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// How delivering the job's webhook went, once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// What the source is (for a video, known once a worker has probed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    pub links: JobLinks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    /// For videos: the frame's time, seconds from the first frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<f64>,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    pub code: FailureCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl JobView {
    /// The view of `record`, its URLs made by `links`.
    pub fn new(record: &JobRecord, links: &Links) -> JobView {
        let job_url = format!("{}/v1/jobs/{}", links.base, record.id);
        let outputs = record
            .outputs
            .iter()
            .map(|o| OutputView {
                name: o.name.clone(),
                frame: o.frame,
                t: o.t,
                content_type: o.content_type.clone(),
                width: o.width,
                height: o.height,
                bytes: o.bytes,
                url: links.output(&record.id, &o.name, o.frame),
            })
            .collect();
        let waiting = record.status == JobStatus::Queued;
        JobView {
            id: record.id.clone(),
            status: record.status,
            attempts: record.attempts,
            created_at: rfc3339(record.created_at),
            started_at: record.started_at.map(rfc3339),
            finished_at: record.finished_at.map(rfc3339),
            progress: record.progress,
            outputs,
            placeholder: record.placeholder.clone(),
            error: record.error.as_ref().map(|e| ErrorView {
                code: e.code,
                message: e.message.clone(),
            }),
            priority: record.priority.as_str().to_owned(),
            cancel_requested: record.cancel_requested && !record.status.is_terminal(),
            next_attempt_at: record.next_attempt_at.filter(|_| waiting).map(rfc3339),
            webhook: record.webhook.clone(),
            media: record.media.clone(),
            links: JobLinks {
                events: format!("{job_url}/events"),
                self_: job_url,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_back_as_it_was_written() {
        let view = JobView {
            id: "j".into(),
            status: JobStatus::Succeeded,
            attempts: 1,
            created_at: rfc3339(0),
            started_at: Some(rfc3339(1)),
            finished_at: Some(rfc3339(2)),
            progress: 100,
            outputs: vec![OutputView {
                name: "thumb".into(),
                frame: None,
                t: None,
                content_type: "image/webp".into(),
                width: 2,
                height: 1,
                bytes: 10,
                url: "/v1/jobs/j/outputs/thumb".into(),
            }],
            placeholder: None,
            error: None,
            priority: "normal".into(),
            cancel_requested: false,
            next_attempt_at: None,
            webhook: None,
            media: None,
            links: JobLinks {
                self_: "/v1/jobs/j".into(),
                events: "/v1/jobs/j/events".into(),
            },
        };
        let text = serde_json::to_string(&view).unwrap();
        assert!(!text.contains("cancel_requested"), "{text}");
        assert_eq!(serde_json::from_str::<JobView>(&text).unwrap(), view);
    }

    #[test]
    fn output_urls_are_signed_when_a_signer_is_given() {
        let signer = UrlSigner::new("k", Duration::from_secs(3600)).unwrap();
        let links = Links::new("https://img.example.com/", Some(signer.clone()));
        let url = links.output("j1", "thumb", Some(7));
        let rest = url.strip_prefix("https://img.example.com").unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        assert_eq!(path, "/v1/jobs/j1/outputs/thumb");
        assert!(query.starts_with("frame=7&exp="), "{url}");
        let now = crate::job::now_ms() / 1000;
        assert_eq!(signer.verify(path, query, now), Ok(()));
        let plain = Links::new("", None).output("j1", "thumb", None);
        assert_eq!(plain, "/v1/jobs/j1/outputs/thumb");
    }
}
