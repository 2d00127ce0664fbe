//! Engine benchmarks on the shared corpus (single-threaded; `scripts/bench-engine.sh` measures
//! whole-machine throughput against vipsthumbnail).
//!
//! `cargo bench -p pipeline --bench engine`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::engine::{self, Limits};
use pipeline::spec::Spec;

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let root = std::env::var_os("IMAGEPIPE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
        .expect("corpus directory (../shared/corpus or $IMAGEPIPE_CORPUS)")
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus file"))
        .collect()
}

fn spec(format: &str) -> Spec {
    Spec::from_json(&format!(
        r#"{{"outputs":[{{"name":"thumb","ops":[{{"op":"resize","width":256,"height":256}}],"format":"{format}","quality":80}}]}}"#
    ))
    .expect("bench spec")
}

fn thumbnails(c: &mut Criterion) {
    let limits = Limits::default();
    let jpeg = spec("jpeg");
    for dir in ["jpeg", "large"] {
        let images = corpus(dir);
        let mut group = c.benchmark_group("thumbnail_256_jpeg_q80");
        group.throughput(Throughput::Elements(images.len() as u64));
        if dir == "large" {
            group.sample_size(20);
        }
        group.bench_function(dir, |b| {
            b.iter(|| {
                for bytes in &images {
                    engine::process(bytes, &jpeg, &limits, &()).expect("thumbnail");
                }
            })
        });
        group.finish();
    }
}

fn output_formats(c: &mut Criterion) {
    let limits = Limits::default();
    let photo = corpus("jpeg").swap_remove(0);
    let mut group = c.benchmark_group("kodim01_256_by_format");
    for format in ["jpeg", "png", "webp", "gif", "avif"] {
        let spec = spec(format);
        group.bench_function(format, |b| {
            b.iter(|| engine::process(&photo, &spec, &limits, &()).expect("render"))
        });
    }
    group.finish();
}

criterion_group!(benches, thumbnails, output_formats);
criterion_main!(benches);
