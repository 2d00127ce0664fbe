//! The OpenAPI document and the router agree: every documented operation is served, and every
//! other method on a documented path answers 405 with the documented methods in `Allow`.
//! (What each operation takes and answers is checked by schemathesis in CI:
//! `scripts/conformance.sh`.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{spawn_app, AppOptions, JsonBody};

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0192e1c0-3c4d-7a8b-9c0d-0e1f2a3b4c5d")
        .replace("{name}", "thumb")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_other_methods_get_405_with_allow() {
    let app = spawn_app(AppOptions::default()).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).json_body().await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{} paths", paths.len());
    for (path, operations) in paths {
        let documented: BTreeSet<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        let url = app.url(&concrete(path));
        for method in METHODS {
            let request = app.http.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            );
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if documented.contains(method) {
                assert_ne!(status, 405, "{method} {path} is documented");
                if status == 404 {
                    let body: Value = response.json().await.unwrap();
                    assert_ne!(body["detail"], "no such route", "{method} {path}");
                }
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented");
                let allow: BTreeSet<String> = response.headers()["allow"]
                    .to_str()
                    .unwrap()
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect();
                assert_eq!(allow, documented, "Allow of {path}");
            }
        }
    }
    app.stop().await;
}
