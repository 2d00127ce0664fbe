//! Multipart upload forms: file parts of one name (`file`, or repeated `frame`), and at most one
//! `spec` part, read in order as they arrive.

use actix_multipart::{Field, Multipart};
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use pipeline::spec::{Spec, SpecError};

use super::spec::{query_pairs, read_small, resolve, spec_from_query, MAX_SPEC_LEN};
use crate::error::ApiError;

pub struct Form {
    parts: Multipart,
    /// The name file parts carry.
    file_part: &'static str,
    /// What the route takes, for the error about an unknown part.
    expected: &'static str,
    spec: Option<String>,
}

impl Form {
    /// The form of `req`, and the spec its query carries (checked before the body is read).
    pub fn open(
        req: &HttpRequest,
        payload: web::Payload,
        file_part: &'static str,
        expected: &'static str,
    ) -> Result<(Form, Option<Spec>), ApiError> {
        let query = spec_from_query(&query_pairs(req), &[])?;
        let form = Form {
            parts: Multipart::new(req.headers(), payload),
            file_part,
            expected,
            spec: None,
        };
        Ok((form, query))
    }

    /// The next file part; `spec` parts met on the way are kept. `None` at the end.
    pub async fn next_file(&mut self) -> Result<Option<Field>, ApiError> {
        while let Some(field) = self.parts.next().await {
            let field =
                field.map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?;
            match field.name() {
                Some("spec") => {
                    let text = read_small(field, MAX_SPEC_LEN, "spec").await?;
                    if self.spec.replace(text).is_some() {
                        return Err(ApiError::BadSpec(SpecError::new("spec", "is given twice")));
                    }
                }
                Some(name) if name == self.file_part => return Ok(Some(field)),
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown multipart part `{other}` (expected {})",
                        self.expected
                    )))
                }
                None => {
                    return Err(ApiError::BadRequest(
                        "a multipart part without a name".into(),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// Reads the rest of the form, which must hold no more file parts.
    pub async fn finish(&mut self) -> Result<(), ApiError> {
        match self.next_file().await? {
            None => Ok(()),
            Some(_) => Err(ApiError::BadRequest(format!(
                "one `{}` part per job: send several frames to /v1/frames",
                self.file_part
            ))),
        }
    }

    /// The spec: the form's `spec` part, or the query's (one of them, not both).
    pub fn spec(self, query: Option<Spec>) -> Result<Spec, ApiError> {
        resolve(self.spec, query)
    }
}
