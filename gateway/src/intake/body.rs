//! Streaming request bodies into storage: bytes are counted (413 as soon as the limit is
//! passed), the format is sniffed from the first bytes (415 before anything is stored), the
//! header is read for the pixel limit (422), and the body goes to storage as it arrives.
//! (Body streaming only: what an upload becomes is the rest of `intake`.)

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use pipeline::engine::{self, sniff, Container, Limits, Sniffed, SourceInfo};
use pipeline::storage::{BodyError, BodyStream, ObjectKey, Storage};
use sha2::{Digest, Sha256};

use crate::error::{from_probe, ApiError};

/// Bytes read before deciding about an upload: enough for the header (and the metadata
/// segments before it) of practically every image.
pub const HEAD_LEN: usize = 256 << 10;

/// A body chunk stalled longer than this ends the request (slow clients cannot hold a
/// connection forever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Any stream of body chunks.
pub type Chunks<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + 'a>>;

/// Wraps an actix payload (or a multipart field): errors become API errors, and a stall past
/// [`IDLE_TIMEOUT`] ends it.
pub fn chunks<'a, S, E>(stream: S) -> Chunks<'a>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + 'a,
    E: std::fmt::Display,
{
    Box::pin(
        futures::stream::unfold(stream, |mut stream| async move {
            match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), stream)),
                Ok(Some(Err(e))) => Some((
                    Err(ApiError::BadRequest(format!(
                        "reading the request body failed: {e}"
                    ))),
                    stream,
                )),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ApiError::BadRequest(
                        "the request body stalled for 30 s".into(),
                    )),
                    stream,
                )),
            }
        })
        // Readers may ask again after the end (reading a head, then the rest).
        .fuse(),
    )
}

/// Counts a request's bytes against its limit, and hashes them when asked (the fingerprint an
/// idempotency key is checked against).
#[derive(Default)]
pub struct RequestBytes {
    pub used: u64,
    pub limit: u64,
    hasher: Option<Sha256>,
}

impl RequestBytes {
    pub fn new(limit: u64, hash: bool) -> RequestBytes {
        RequestBytes {
            used: 0,
            limit,
            hasher: hash.then(Sha256::new),
        }
    }

    fn take(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.used += chunk.len() as u64;
        if self.used > self.limit {
            return Err(ApiError::TooLarge { limit: self.limit });
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(chunk);
        }
        Ok(())
    }

    /// Mixes more into the fingerprint (the spec, the part names...).
    pub fn add_to_fingerprint(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
    }

    pub fn fingerprint(self) -> String {
        self.hasher
            .map(|h| pipeline::text::hex(&h.finalize()))
            .unwrap_or_default()
    }
}

/// Reads the body up to [`HEAD_LEN`] bytes. Returns the head and whether the body ended in it.
async fn read_head(
    body: &mut Chunks<'_>,
    budget: &mut RequestBytes,
) -> Result<(BytesMut, bool), ApiError> {
    let mut head = BytesMut::new();
    while head.len() < HEAD_LEN {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                budget.take(&chunk)?;
                head.extend_from_slice(&chunk);
            }
            None => return Ok((head, true)),
        }
    }
    Ok((head, false))
}

/// Streams the head, then what remains of `body`, into storage; the rest is counted (and
/// hashed) on its way through.
async fn store_rest(
    storage: &Storage,
    key: &ObjectKey,
    head: Bytes,
    body: Chunks<'_>,
    budget: &mut RequestBytes,
) -> Result<u64, ApiError> {
    let shared = Rc::new(RefCell::new(std::mem::take(budget)));
    let counter = shared.clone();
    let rest = body.map(move |chunk| {
        let chunk = chunk?;
        counter.borrow_mut().take(&chunk)?;
        Ok(chunk)
    });
    let stream: BodyStream<'_> = Box::pin(
        futures::stream::once(async move { Ok::<Bytes, ApiError>(head) })
            .chain(rest)
            .map(|chunk| chunk.map_err(|e| Box::new(e) as BodyError)),
    );
    let stored = storage
        .put_stream(key, stream, "application/octet-stream")
        .await;
    *budget = std::mem::take(&mut *shared.borrow_mut());
    Ok(stored?.size)
}

/// What a stored upload turned out to be, judged by its bytes.
pub enum Upload {
    /// An image, with what its header says.
    Image(SourceInfo),
    /// A video file (probed later, by the worker's decoder).
    Video(Container),
}

/// Stores an image or video body under `key` after checking its bytes. Nothing is stored when
/// the body is refused.
pub async fn store_upload(
    storage: &Storage,
    key: &ObjectKey,
    mut body: Chunks<'_>,
    budget: &mut RequestBytes,
    limits: &Limits,
) -> Result<(Upload, u64), ApiError> {
    let (head, ended) = read_nonempty_head(&mut body, budget).await?;
    match sniff(&head) {
        Sniffed::Video(container) => {
            let size = store_rest(storage, key, head.freeze(), body, budget).await?;
            Ok((Upload::Video(container), size))
        }
        Sniffed::Image(_) => store_image_body(storage, key, (head, ended), body, budget, limits)
            .await
            .map(|(info, size)| (Upload::Image(info), size)),
        Sniffed::Unsupported(_) | Sniffed::NotAnImage => {
            Err(ApiError::UnsupportedMediaType(format!(
                "{}; or a video (mp4, mov, webm, mkv, ts)",
                refusal(&head, limits)
            )))
        }
    }
}

/// Stores an image body (a frame) under `key` after checking its bytes, and returns what its
/// header says. Nothing is stored when the body is refused.
pub async fn store_image(
    storage: &Storage,
    key: &ObjectKey,
    mut body: Chunks<'_>,
    budget: &mut RequestBytes,
    limits: &Limits,
) -> Result<(SourceInfo, u64), ApiError> {
    let (head, ended) = read_nonempty_head(&mut body, budget).await?;
    match sniff(&head) {
        Sniffed::Image(_) => {
            store_image_body(storage, key, (head, ended), body, budget, limits).await
        }
        Sniffed::Video(_) => Err(ApiError::UnsupportedMediaType(
            "a video file: send it to POST /v1/jobs".into(),
        )),
        Sniffed::Unsupported(_) | Sniffed::NotAnImage => {
            Err(ApiError::UnsupportedMediaType(refusal(&head, limits)))
        }
    }
}

/// Why bytes that are no image we read are refused.
fn refusal(head: &[u8], limits: &Limits) -> String {
    engine::probe(head, limits)
        .err()
        .map_or_else(|| "not an image".to_owned(), |e| e.to_string())
}

/// The head of a body that must not be empty.
async fn read_nonempty_head(
    body: &mut Chunks<'_>,
    budget: &mut RequestBytes,
) -> Result<(BytesMut, bool), ApiError> {
    let (head, ended) = read_head(body, budget).await?;
    if head.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty: send an image".into(),
        ));
    }
    Ok((head, ended))
}

/// Stores a body that sniffed as an image, once its header passed: over the pixel limit or
/// unreadable, it is refused before anything is stored (or deleted, when the header reaches
/// past the head and is only read from storage).
async fn store_image_body(
    storage: &Storage,
    key: &ObjectKey,
    (head, ended): (BytesMut, bool),
    body: Chunks<'_>,
    budget: &mut RequestBytes,
    limits: &Limits,
) -> Result<(SourceInfo, u64), ApiError> {
    let head = head.freeze();
    let early = match engine::probe(&head, limits) {
        Ok(info) => Some(info),
        Err(
            e @ (engine::EngineError::PixelLimit { .. }
            | engine::EngineError::NotAnImage
            | engine::EngineError::UnsupportedFormat(_)),
        ) => {
            return Err(from_probe(e));
        }
        // A whole file that does not decode is refused now; a header that reaches past the
        // head is read again from storage.
        Err(e) if ended => return Err(from_probe(e)),
        Err(_) => None,
    };
    let size = store_rest(storage, key, head, body, budget).await?;
    let info = match early {
        Some(info) => info,
        None => {
            let prefix = storage.get_prefix(key, 8 << 20).await?;
            match engine::probe(&prefix, limits) {
                Ok(info) => info,
                Err(e) => {
                    let _ = storage.delete(key).await;
                    return Err(from_probe(e));
                }
            }
        }
    };
    Ok((info, size))
}

/// Stores a raw body (raw video frames) under `key`, counting it against the budget.
pub async fn store_raw(
    storage: &Storage,
    key: &ObjectKey,
    mut body: Chunks<'_>,
    budget: &mut RequestBytes,
) -> Result<u64, ApiError> {
    let (head, ended) = read_head(&mut body, budget).await?;
    if head.is_empty() && ended {
        return Err(ApiError::BadRequest("the body is empty".into()));
    }
    store_rest(storage, key, head.freeze(), body, budget).await
}
