//! The spec of an upload: from a multipart part, `?spec=<JSON>` or the shorthand, and the checks
//! the engine's validation cannot make (where a spec is used, whether its webhook may be called).

use actix_web::HttpRequest;
use futures::StreamExt;
use pipeline::spec::{Spec, SpecError};

use crate::error::ApiError;
use crate::state::AppState;

/// The largest spec accepted in a multipart part or a JSON body.
pub const MAX_SPEC_LEN: usize = 64 << 10;

/// The query string as decoded pairs, in order.
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The spec a query carries: `?spec=<JSON>`, or the shorthand. `other` lists parameters that
/// belong to the route (not to the spec). `None` when the query holds neither.
pub fn spec_from_query(
    pairs: &[(String, String)],
    other: &[&str],
) -> Result<Option<Spec>, ApiError> {
    let mut json = None;
    let mut shorthand = Vec::new();
    for (key, value) in pairs {
        if key == "spec" {
            if json.replace(value.as_str()).is_some() {
                return Err(ApiError::BadSpec(SpecError::new("spec", "is given twice")));
            }
        } else if Spec::is_shorthand_key(key) {
            shorthand.push((key.as_str(), value.as_str()));
        } else if !other.contains(&key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{key}`"
            )));
        }
    }
    match (json, shorthand.is_empty()) {
        (Some(_), false) => Err(ApiError::BadSpec(SpecError::new(
            "spec",
            "give either ?spec= or the shorthand parameters, not both",
        ))),
        (Some(text), true) => Ok(Some(Spec::from_json(text)?)),
        (None, false) => Ok(Some(Spec::from_shorthand(shorthand)?)),
        (None, true) => Ok(None),
    }
}

/// The spec from a part (`part`) or the query (`query`): one of them, not both.
pub fn resolve(part: Option<String>, query: Option<Spec>) -> Result<Spec, ApiError> {
    match (part, query) {
        (Some(_), Some(_)) => Err(ApiError::BadSpec(SpecError::new(
            "spec",
            "give the spec as a part or in the query, not both",
        ))),
        (Some(text), None) => Ok(Spec::from_json(&text)?),
        (None, Some(spec)) => Ok(spec),
        (None, None) => Err(missing()),
    }
}

/// No spec anywhere: there is no implicit default transform.
pub fn missing() -> ApiError {
    ApiError::BadSpec(SpecError::new(
        "spec",
        "is required: a `spec` part, ?spec=<JSON>, or the shorthand (?w=256&format=webp)",
    ))
}

/// Reads a small multipart part (a spec) into a string.
pub async fn read_small(
    mut field: actix_multipart::Field,
    limit: usize,
    name: &str,
) -> Result<String, ApiError> {
    let mut data = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?;
        data.extend_from_slice(&chunk);
        if data.len() > limit {
            return Err(ApiError::BadSpec(SpecError::new(
                name,
                format!("is over {limit} bytes"),
            )));
        }
    }
    String::from_utf8(data).map_err(|_| ApiError::BadSpec(SpecError::new(name, "is not UTF-8")))
}

/// Checks what a spec asks for that the engine's validation cannot know: where it is used
/// (`frames`: whether the upload may be frames, so a sprite makes sense), and whether its
/// webhook may be called.
pub fn check(state: &AppState, spec: &Spec, frames: bool) -> Result<(), ApiError> {
    if !frames && spec.sprite.is_some() {
        return Err(ApiError::BadSpec(SpecError::new(
            "sprite",
            "only videos and frame jobs (POST /v1/frames) make sprites",
        )));
    }
    if let Some(webhook) = &spec.webhook {
        state
            .webhook_policy
            .check(&webhook.url)
            .map_err(|why| ApiError::BadSpec(SpecError::new("webhook.url", why.to_string())))?;
    }
    Ok(())
}
