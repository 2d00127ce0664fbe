//! Hostile input over HTTP, against gateway and worker processes: every file of the corpus's
//! `hostile/` folder, generated bombs, truncations at many offsets and seeded random mutations
//! of real photos. The gateway answers 202 or a 4xx (never a 5xx, a reset or a hang); every
//! accepted job ends `succeeded` or `failed` with a code; no process dies; the worker's peak
//! RSS is reported (and bounded).
//!
//! `IMAGEPIPE_HOSTILE_MUTATIONS=N` changes the number of mutations (default 240).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fixtures::servers::corpus as corpus_path;
use futures::StreamExt;
use serde_json::Value;

use crate::processes::{upload, Cluster, LIGHT};

/// Animated outputs: every frame of an animated source is decoded and encoded twice.
const ANIMATED: &str = r#"{"outputs":[
    {"name":"w","ops":[{"op":"resize","width":64}],"format":"webp","animated":true},
    {"name":"g","ops":[{"op":"resize","width":32}],"format":"gif","animated":true}]}"#;

/// Every case: a name, its bytes and the spec it is sent with.
fn cases() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut files = Vec::new();
    collect(&corpus_path("hostile"), &mut files);
    files.sort();
    for path in files {
        let name = path.display().to_string();
        cases.push((name, std::fs::read(&path).unwrap()));
    }
    cases.push((
        "png header 100000x100000".into(),
        fixtures::png_header_bomb(100_000, 100_000),
    ));
    cases.push((
        "jpeg SOF 65000x65000".into(),
        fixtures::jpeg_sof_bomb(65_000, 65_000),
    ));
    cases.push(("gif screen 65535x65535".into(), fixtures::gif_screen_bomb()));
    cases.push((
        "tiff header 100000x100000".into(),
        fixtures::tiff_header_bomb(100_000, 100_000),
    ));
    cases.push((
        "bmp header 20000x20000".into(),
        fixtures::bmp_header_bomb(20_000, 20_000),
    ));
    cases.push((
        "png zip bomb 9000x9000 (honest, under the limit)".into(),
        fixtures::png_zip_bomb(9_000, 9_000),
    ));
    cases.push((
        "png zip bomb 12000x9000 (honest, over the limit)".into(),
        fixtures::png_zip_bomb(12_000, 9_000),
    ));
    cases.push((
        "gif with 3000 frames".into(),
        fixtures::gif_many_frames(3_000),
    ));

    let photos = [
        "jpeg/kodim03.jpg",
        "kodak/kodim05.png",
        "formats/4.webp",
        "formats/Crash_test.gif",
        "exif/Landscape_6.jpg",
        "camera/mandrill.tiff",
        "camera/V5_24_Bit.bmp",
        "camera/IMG_2682.heic",
        "camera/8bit-sRGB.avif",
        "camera/8bit-sRGB.jxl",
    ];
    for photo in photos {
        let bytes = std::fs::read(corpus_path(photo)).unwrap();
        for cut in [1, 2, 8, 20, 64, 200] {
            cases.push((
                format!("{photo} cut at {cut} bytes"),
                bytes[..cut.min(bytes.len())].to_vec(),
            ));
        }
        for i in 1..12 {
            cases.push((
                format!("{photo} cut at {i}/12"),
                fixtures::truncate(&bytes, f64::from(i) / 12.0),
            ));
        }
    }
    let mutations: u64 = std::env::var("IMAGEPIPE_HOSTILE_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(240);
    let originals: Vec<Vec<u8>> = photos
        .iter()
        .map(|p| std::fs::read(corpus_path(p)).unwrap())
        .collect();
    for seed in 0..mutations {
        let which = (seed as usize) % originals.len();
        let edits = 1 + (seed as usize * 7) % 24;
        cases.push((
            format!("{} mutated (seed {seed}, {edits} edits)", photos[which]),
            fixtures::mutate(&originals[which], seed, edits),
        ));
    }
    let mut cases: Vec<_> = cases.into_iter().map(|(n, b)| (n, b, LIGHT)).collect();
    cases.extend(animated_cases(mutations / 4));
    cases
}

/// Animated GIFs, WebPs and an APNG sent with [`ANIMATED`]: whole, cut, mutated, and one with
/// more frames than `--max-frames`.
fn animated_cases(mutations: u64) -> Vec<(String, Vec<u8>, &'static str)> {
    let mut sources: Vec<(String, Vec<u8>)> = [
        "formats/animated-loop-3.gif",
        "formats/rotating-squares.webp",
        "formats/moon_impact.gif",
    ]
    .iter()
    .map(|p| (p.to_string(), std::fs::read(corpus_path(p)).unwrap()))
    .collect();
    sources.push(("apng 40 frames".into(), fixtures::apng(80, 60, 40, 0)));
    let mut cases = vec![(
        "gif with 3000 frames, animated".to_owned(),
        fixtures::gif_many_frames(3_000),
    )];
    for (name, bytes) in &sources {
        cases.push((format!("{name}, animated"), bytes.clone()));
        for i in 1..8 {
            cases.push((
                format!("{name} cut at {i}/8, animated"),
                fixtures::truncate(bytes, f64::from(i) / 8.0),
            ));
        }
    }
    for seed in 0..mutations {
        let (name, bytes) = &sources[(seed as usize) % sources.len()];
        let edits = 1 + (seed as usize * 5) % 16;
        cases.push((
            format!("{name} mutated (seed {seed}, {edits} edits), animated"),
            fixtures::mutate(bytes, seed, edits),
        ));
    }
    cases
        .into_iter()
        .map(|(name, bytes)| (name, bytes, ANIMATED))
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The status and body of an answer, or why there was none.
type Answer = Result<(u16, Value), String>;

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_answer_and_never_a_crash() {
    let cluster = Cluster::start().await;
    let mut worker = cluster.worker(&["--job-timeout", "60s"]);
    let cases = cases();
    let total = cases.len();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let address = cluster.address.clone();
    let answers: Vec<(String, Answer)> =
        futures::stream::iter(cases.into_iter().map(|(name, bytes, spec)| {
            let (http, address) = (http.clone(), address.clone());
            async move {
                let answer =
                    match upload(&http, &address, bytes, spec, Duration::from_secs(60)).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body = response.json::<Value>().await.unwrap_or(Value::Null);
                            Ok((status, body))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                (name, answer)
            }
        }))
        .buffer_unordered(4)
        .collect()
        .await;

    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (name, answer) in &answers {
        let (status, body) = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        assert!(
            *status == 202 || (400..500).contains(status),
            "{name}: {status} {body}"
        );
        if name.contains(" header ") {
            // Pixel bombs are refused from their headers at upload, before anything is queued.
            assert_eq!(*status, 422, "{name}: {body}");
        }
        if *status == 202 {
            accepted.push(body["id"].as_str().unwrap().to_owned());
            names.insert(body["id"].as_str().unwrap().to_owned(), name.clone());
        } else {
            assert_eq!(body["status"], *status, "{name}: not problem+json: {body}");
            let code = body["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {body}"));
            *refused.entry(format!("{status} {code}")).or_default() += 1;
        }
    }

    let jobs = cluster.wait_all(&accepted, Duration::from_secs(300)).await;
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        let key = match job["status"].as_str().unwrap() {
            "succeeded" => {
                let name = &names[job["id"].as_str().unwrap()];
                assert!(!name.starts_with("gif with 3000 frames, animated"), "{job}");
                "succeeded".to_owned()
            }
            "failed" => {
                let code = job["error"]["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{job}"));
                assert!(
                    !job["error"]["message"].as_str().unwrap_or("").is_empty(),
                    "{job}"
                );
                assert_ne!(
                    code,
                    "internal",
                    "{} is a bad input, not a bug: {job}",
                    names[job["id"].as_str().unwrap()]
                );
                if names[job["id"].as_str().unwrap()].starts_with("gif with 3000 frames, animated")
                {
                    // Over `--max-frames` (2000), counted before any frame is decoded.
                    assert_eq!(code, "pixel_limit", "{job}");
                }
                format!("failed {code}")
            }
            other => panic!("unexpected final status {other}: {job}"),
        };
        *ended.entry(key).or_default() += 1;
    }
    // Nobody died, and the service still works.
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker died"
    );
    let fine = cluster
        .submit(
            std::fs::read(corpus_path("jpeg/kodim09.jpg")).unwrap(),
            LIGHT,
        )
        .await;
    let last = cluster.wait_all(&[fine], Duration::from_secs(30)).await;
    assert_eq!(last[0]["status"], "succeeded", "{last:?}");
    let peak = peak_rss_kb(worker.child.id()).unwrap_or(0);
    println!(
        "hostile suite: {total} uploads; refused: {refused:?}; accepted {}: {ended:?}; \
         worker peak RSS {} MB",
        accepted.len(),
        peak / 1024
    );
    // The 9000x9000 bomb decodes to 81 MB of gray (then RGB); nothing may hold much more.
    assert!(peak < 1_500_000, "worker peak RSS {} MB", peak / 1024);
    assert!(!accepted.is_empty() && !refused.is_empty());
    worker.signal("TERM");
}

/// A part: name, filename, content type, body.
type Part = (String, Option<String>, Option<String>, Vec<u8>);

/// A multipart body as a client might (mis)build it.
#[derive(Debug, Clone)]
struct MultipartCase {
    header_boundary: Option<String>,
    body_boundary: String,
    parts: Vec<Part>,
    damage: u8,
    seed: u64,
}

fn multipart_case() -> impl proptest::strategy::Strategy<Value = MultipartCase> {
    use proptest::prelude::*;
    let image = fixtures::one_by_one_png();
    let body = prop_oneof![
        Just(image),
        Just(br#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":8}]}]}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(Vec::new()),
    ];
    let part = (
        prop_oneof![
            Just("file".to_owned()),
            Just("spec".to_owned()),
            Just("frame".to_owned()),
            "[a-z\"\\\\;= ]{0,10}",
        ],
        proptest::option::of("[a-zA-Z0-9._/\\\\\"; -]{0,20}"),
        proptest::option::of(prop_oneof![
            Just("image/png".to_owned()),
            Just("application/json".to_owned()),
            "[a-z/;= -]{0,20}",
        ]),
        body,
    );
    (
        proptest::option::of("[A-Za-z0-9'()+_,./:=?-]{1,70}"),
        "[A-Za-z0-9'()+_,./:=?-]{1,70}",
        prop_oneof![
            // Well-formed parts a client would send (damage may still apply)...
            Just(vec![
                (
                    "file".to_owned(),
                    Some("a.png".to_owned()),
                    Some("image/png".to_owned()),
                    fixtures::one_by_one_png()
                ),
                (
                    "spec".to_owned(),
                    None,
                    None,
                    br#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":8}]}]}"#.to_vec()
                ),
            ]),
            // ...or anything.
            prop::collection::vec(part, 0..4),
        ],
        0u8..6,
        any::<u64>(),
    )
        .prop_map(
            |(header_boundary, body_boundary, parts, damage, seed)| MultipartCase {
                header_boundary,
                body_boundary,
                parts,
                damage,
                seed,
            },
        )
}

impl MultipartCase {
    fn content_type(&self) -> String {
        match &self.header_boundary {
            // Most cases agree on the boundary; some lie.
            Some(b) if self.seed.is_multiple_of(4) => format!("multipart/form-data; boundary={b}"),
            None if self.seed.is_multiple_of(7) => "multipart/form-data".into(),
            _ => format!("multipart/form-data; boundary=\"{}\"", self.body_boundary),
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, content_type, data) in &self.parts {
            body.extend_from_slice(format!("--{}\r\n", self.body_boundary).as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = filename {
                disposition.push_str(&format!("; filename=\"{f}\""));
            }
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
            if let Some(t) = content_type {
                body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{}--\r\n", self.body_boundary).as_bytes());
        match self.damage {
            // Cut short.
            1 => body.truncate((self.seed % (body.len() as u64 + 1)) as usize),
            // Bare LF line ends.
            2 => {
                body = String::from_utf8_lossy(&body)
                    .replace("\r\n", "\n")
                    .into_bytes()
            }
            // Random damage.
            3 => body = fixtures::mutate(&body, self.seed, 1 + (self.seed % 8) as usize),
            // No closing boundary.
            4 => {
                let closing = format!("--{}--\r\n", self.body_boundary).len();
                body.truncate(body.len() - closing);
            }
            _ => {}
        }
        body
    }
}

#[tokio::test]
async fn fuzzed_multipart_bodies_get_a_clear_answer() {
    use proptest::strategy::{Strategy, ValueTree};
    let app = crate::helpers::spawn_app(crate::helpers::AppOptions::default()).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = multipart_case();
    let cases: usize = std::env::var("IMAGEPIPE_MULTIPART_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..cases {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let response = app
            .http
            .post(app.url("/v1/jobs"))
            .header("content-type", case.content_type())
            .body(case.body())
            .timeout(Duration::from_secs(40))
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer to {case:?}: {e}"));
        let status = response.status().as_u16();
        assert!(
            status == 202 || (400..500).contains(&status),
            "{status} for {case:?}: {:?}",
            response.text().await
        );
        if status == 202 {
            let id = response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(app.queue.get(&id).await.unwrap().is_some());
        }
        *statuses.entry(status).or_default() += 1;
    }
    println!("fuzzed multipart: {cases} bodies, answers {statuses:?}");
    assert!(
        statuses.contains_key(&202) && statuses.len() > 2,
        "{statuses:?}"
    );
    app.stop().await;
}
