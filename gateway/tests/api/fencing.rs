//! Zombie workers (API.md, "Fencing"): a worker that holds a job, stalls or is cut off from
//! Redis past its visibility timeout while another worker takes the job over and finishes it,
//! then comes back, changes nothing of that job — record, outputs, attempts stay the new
//! holder's — logs the lost lease, and carries on with other work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixtures::proxy::Proxy;
use fixtures::servers::unique;
use serde_json::Value;

use crate::helpers::{corpus, redis_url};
use crate::processes::{Cluster, Process, HEAVY, LIGHT};

/// The slow job: a 12 MP photo into three large outputs, on one engine thread.
const PHOTO: &str = "large/canon_eos1300d_canon-dslr.jpg";

/// How a zombie is made: frozen by a signal, or cut off from Redis by a proxy.
enum Stall {
    Stopped,
    CutOff(Proxy),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_changes_nothing_when_it_resumes() {
    zombie(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_past_its_lease_changes_nothing_when_it_returns() {
    zombie(true).await;
}

async fn zombie(cut_off: bool) {
    let cluster = Cluster::start().await;
    let log = cluster.dir.path().join(format!("{}.log", unique("zombie")));
    let (stall, zombie_args) = if cut_off {
        let port: u16 = redis_url()
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next()?.parse().ok())
            .expect("the test Redis URL has a port");
        let proxy = Proxy::start(port);
        let mut args = cluster.worker_args(&[]);
        let at = args.iter().position(|a| a == "--redis-url").unwrap() + 1;
        args[at] = format!("redis://127.0.0.1:{}/0", proxy.port);
        (Stall::CutOff(proxy), args)
    } else {
        (Stall::Stopped, cluster.worker_args(&[]))
    };
    let zombie = Process::spawn_logged("worker", &zombie_args, cluster.dir.path(), &[], Some(&log));
    let id = cluster.submit(corpus(PHOTO), HEAVY).await;
    wait_status(&cluster, &id, "running", Duration::from_secs(30)).await;
    match &stall {
        Stall::Stopped => zombie.signal("STOP"),
        Stall::CutOff(proxy) => proxy.cut(),
    }

    // Another worker takes the job over once the lease (2 s) runs out, and finishes it.
    let mut rescuer = cluster.worker(&[]);
    wait_status(&cluster, &id, "succeeded", Duration::from_secs(60)).await;
    let finished = cluster.job(&id).await;
    assert_eq!(finished["attempts"], 2, "{finished}");
    // Each attempt writes under its own `{lease token}-{worker}` folder: the rescuer's is 2-….
    let objects = cluster.dir.path().join("objects/outputs").join(&id);
    let stored: Vec<PathBuf> = files_under(&objects)
        .into_iter()
        .filter(|f| of_attempt(f.strip_prefix(&objects).unwrap(), 2))
        .collect();
    assert_eq!(stored.len(), 3, "the rescuer's three outputs: {stored:?}");

    // The zombie comes back. Whatever it was doing, it may not touch the job.
    match &stall {
        Stall::Stopped => zombie.signal("CONT"),
        Stall::CutOff(proxy) => proxy.heal(),
    }
    let noticed = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("lease lost"))
    })
    .await;
    assert!(noticed, "the zombie never logged its lost lease");
    // Long enough for anything it had in flight (an end, progress, outputs) to land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster.job(&id).await;
    for field in ["status", "attempts", "progress", "outputs", "finished_at"] {
        assert_eq!(after[field], finished[field], "{field} changed: {after}");
    }
    assert_eq!(
        files_under(&objects),
        stored,
        "the zombie's objects are gone, the rescuer's intact"
    );
    for output in after["outputs"].as_array().unwrap() {
        let bytes = cluster.bytes(output["url"].as_str().unwrap()).await;
        assert_eq!(bytes.len() as u64, output["bytes"].as_u64().unwrap());
    }

    // It carries on: with the rescuer gone, it runs the next job.
    rescuer.signal("TERM");
    rescuer
        .wait_exit(Duration::from_secs(30))
        .expect("the rescuer stops");
    let next = cluster.submit(corpus("jpeg/kodim23.jpg"), LIGHT).await;
    let done = cluster.wait_all(&[next], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    cluster.queue.purge().await.ok();
}

async fn wait_status(cluster: &Cluster, id: &str, status: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let job: Value = cluster.job(id).await;
        if job["status"] == status {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} never became {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Whether `path` (below a job's outputs) is of the attempt with lease token `token`: each
/// attempt writes under its own `{token}-{worker}` folder.
fn of_attempt(path: &Path, token: u64) -> bool {
    let first = path.components().next();
    first.is_some_and(|c| {
        c.as_os_str()
            .to_string_lossy()
            .starts_with(&format!("{token}-"))
    })
}

/// Every file below `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
