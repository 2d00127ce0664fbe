//! Object keys. The server makes every key; users never name one. A key is a `/`-separated path
//! of segments made of `[A-Za-z0-9_-.]` that do not start with a dot — so no key can be absolute,
//! climb with `..`, hide a NUL, or collide with a backend's own hidden files.

use std::fmt;

const MAX_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {0:?}")]
pub struct InvalidKey(pub String);

impl ObjectKey {
    pub fn parse(text: &str) -> Result<ObjectKey, InvalidKey> {
        let valid = !text.is_empty()
            && text.len() <= MAX_LEN
            && text.split('/').all(|segment| {
                !segment.is_empty()
                    && !segment.starts_with('.')
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            });
        if valid {
            Ok(ObjectKey(text.to_owned()))
        } else {
            Err(InvalidKey(text.to_owned()))
        }
    }

    /// The uploaded original of a job.
    pub fn original(job_id: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::parse(&format!("originals/{job_id}"))
    }

    /// Frame `index` of a frame job's originals.
    pub fn original_frame(job_id: &str, index: u32) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::parse(&format!("originals/{job_id}/{index}"))
    }

    /// An output of one attempt (`attempt`: its lease token and worker, e.g. `2-5f3a09c1`):
    /// `outputs/{job}/{attempt}/{name}.{ext}`, or `outputs/{job}/{attempt}/{name}/{frame}.{ext}`.
    /// Each attempt writes its own objects, so a worker that lost its lease never replaces the
    /// outputs the job's record links.
    pub fn output(
        job_id: &str,
        attempt: &str,
        name: &str,
        frame: Option<u32>,
        extension: &str,
    ) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::parse(&match frame {
            Some(frame) => format!("outputs/{job_id}/{attempt}/{name}/{frame}.{extension}"),
            None => format!("outputs/{job_id}/{attempt}/{name}.{extension}"),
        })
    }

    /// A presigned upload waiting to become a job's original.
    pub fn upload(upload_id: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::parse(&format!("uploads/{upload_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The content type its extension implies.
    pub fn content_type(&self) -> &'static str {
        match self.0.rsplit_once('.').map(|(_, ext)| ext) {
            Some("jpg") => "image/jpeg",
            Some("png") => "image/png",
            Some("webp") => "image/webp",
            Some("avif") => "image/avif",
            Some("gif") => "image/gif",
            Some("vtt") => "text/vtt",
            _ => "application/octet-stream",
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_or_smuggle() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            ".tmp/x",
            "a/.hidden",
            "a b",
            "é",
            &"a".repeat(513),
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "originals/0192e1c0-3c4d-7a8b-9c0d-0e1f2a3b4c5d",
            "outputs/x/thumb.jpg",
            "a/b/c_d-e.f",
        ] {
            assert!(ObjectKey::parse(good).is_ok(), "{good}");
        }
        assert!(ObjectKey::output("id", "1-a", "../../etc", None, "jpg").is_err());
        assert_eq!(
            ObjectKey::output("id", "2-a", "thumb", Some(3), "webp")
                .unwrap()
                .as_str(),
            "outputs/id/2-a/thumb/3.webp"
        );
        assert_eq!(
            ObjectKey::output("id", "1-a", "t", None, "jpg")
                .unwrap()
                .content_type(),
            "image/jpeg"
        );
    }
}
