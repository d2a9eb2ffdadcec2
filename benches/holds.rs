//! The hold store's costs on this machine, sled and PostgreSQL in one run
//! (PostgreSQL: a private cluster on loopback, as the tests start it): hold
//! creation latency including durability (p50/p99), then with a large
//! pending queue (default 100,000 holds) the first page of the pending list,
//! start-up (open + recovery), approve-to-upstream (approved and sent by
//! one instance, the answer heard by the instance the agent waits on), and,
//! on PostgreSQL, how soon a second instance hears of an approval.
//!
//! `cargo bench --bench holds` — `HOLDS=20000` for a shorter run,
//! `BACKENDS=sled` for one backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use airlock::holds::store::{ListFilter, system_clock};
use airlock::holds::{State, Store};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The `i`th hold, from one of 1,000 agents, each under the default cap's
/// order of magnitude.
fn agent_hold(i: u64) -> airlock::holds::Hold {
    let mut h = support::pending_hold(i);
    h.agent = format!("agent-{}", i % 1000);
    h
}

/// As many pending holds as each agent may have here.
const CAP: u64 = 200;

/// One backend's figures.
#[derive(Debug, Default)]
struct Figures {
    create_p50: Duration,
    create_p99: Duration,
    fill_per_sec: f64,
    page_p50: Duration,
    page_p99: Duration,
    startup: Duration,
    release_p50: Duration,
    release_p99: Duration,
}

/// Where a backend's store is: a sled directory or a database URL.
enum Place {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    async fn open(&self) -> Store {
        match self {
            Place::Sled(dir) => Store::open(&dir.path().join("store"), system_clock()).unwrap(),
            Place::Postgres(url) => Store::connect(url, &[], system_clock()).await.unwrap(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Place::Sled(_) => "sled",
            Place::Postgres(_) => "postgres",
        }
    }
}

async fn measure(place: &Place, total: u64) -> Figures {
    let name = place.name();
    let store = place.open().await;
    let mut f = Figures::default();
    // One agent at a time: the latency an agent waits for its held answer.
    let mut lat = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        store
            .create(agent_hold(i), support::mail_body(i), CAP)
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    (f.create_p50, f.create_p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
    println!(
        "[{name}] hold creation, durable, sequential (1,000): p50 {:.2} ms, p99 {:.2} ms",
        ms(f.create_p50),
        ms(f.create_p99)
    );
    // Many agents at once: fill the queue.
    let t = Instant::now();
    let mut next = 1000;
    while next < total {
        let batch: Vec<_> = (next..(next + 64).min(total))
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.create(agent_hold(i), support::mail_body(i), CAP)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for b in batch {
            b.await.unwrap();
        }
        next += 64;
    }
    f.fill_per_sec = (total - 1000) as f64 / t.elapsed().as_secs_f64();
    println!(
        "[{name}] filled to {total} pending holds, 64 at a time: {:.0} holds/s",
        f.fill_per_sec
    );
    let filter = ListFilter {
        state: Some(State::Pending),
        limit: 100,
        ..Default::default()
    };
    let mut page = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (holds, _) = store.list(&filter).await.unwrap();
        page.push(t.elapsed());
        assert_eq!(holds.len(), 100);
    }
    page.sort();
    (f.page_p50, f.page_p99) = (pct(&page, 0.5), pct(&page, 0.99));
    println!(
        "[{name}] first page of pending (100 of {total}): p50 {:.2} ms, p99 {:.2} ms",
        ms(f.page_p50),
        ms(f.page_p99)
    );
    store.flush().await.unwrap();
    if let Place::Sled(dir) = place {
        let size = dir_size(dir.path());
        println!(
            "[{name}] store on disk: {:.1} MiB, {:.0} bytes per hold",
            size as f64 / 1048576.0,
            size as f64 / total as f64
        );
    }
    drop(store);
    let t = Instant::now();
    let store = place.open().await;
    let to_send = store.recover().await.unwrap();
    f.startup = t.elapsed();
    println!(
        "[{name}] start-up with {total} pending (open + recovery): {:.0} ms ({} to send)",
        ms(f.startup),
        to_send.len()
    );
    // Approve-to-upstream across instances: an agent's sidecar (`waiter`)
    // holds the request; a review server (`sender`) approves and sends it;
    // the time until the waiting sidecar hears the upstream answered. On
    // sled both are one process.
    let waiter = match place {
        Place::Postgres(_) => place.open().await,
        Place::Sled(_) => store.clone(),
    };
    let up = common::upstream(None).await;
    let config = airlock::config::Config::defaults(&airlock::config::Env::default()).unwrap();
    let releaser = airlock::holds::release::Releaser::new(
        store.clone(),
        airlock::upstream::Upstream::new(&config.proxy).unwrap(),
        std::sync::Arc::new(airlock::credentials::Credentials::default()),
        1 << 20,
        Duration::from_secs(10),
    );
    let mut released = Vec::new();
    for i in 0..200 {
        let mut h = agent_hold(total + i);
        h.url = format!("http://127.0.0.1:{}/v3/mail/send", up.port());
        let h = match waiter.create(h, support::mail_body(i), CAP).await.unwrap() {
            airlock::holds::store::Created::New(h) => h,
            other => panic!("{other:?}"),
        };
        let mut events = waiter.subscribe();
        let t = Instant::now();
        store.approve(&h.id, "alice", None, None).await.unwrap();
        releaser.release(&h.id).await.unwrap().unwrap();
        loop {
            let e = events.recv().await.unwrap();
            if e.id == h.id && e.event == "released" {
                break;
            }
        }
        released.push(t.elapsed());
    }
    assert_eq!(up.count(), 200, "each sent once");
    released.sort();
    (f.release_p50, f.release_p99) = (pct(&released, 0.5), pct(&released, 0.99));
    println!(
        "[{name}] approve to upstream answer heard by the waiting instance (200): p50 {:.2} ms, p99 {:.2} ms",
        ms(f.release_p50),
        ms(f.release_p99)
    );
    if let Place::Postgres(_) = place {
        // Approve on one instance; how soon the other hears.
        let other = waiter;
        let (pending, _) = store.list(&filter).await.unwrap();
        let mut heard = Vec::new();
        for h in pending.iter().take(50) {
            let mut events = other.subscribe();
            let t = Instant::now();
            store.approve(&h.id, "alice", None, None).await.unwrap();
            loop {
                let e = events.recv().await.unwrap();
                if e.id == h.id && e.event == "approved" {
                    break;
                }
            }
            heard.push(t.elapsed());
        }
        heard.sort();
        println!(
            "[{name}] approval on one instance heard on another (50): p50 {:.2} ms, p99 {:.2} ms",
            ms(pct(&heard, 0.5)),
            ms(pct(&heard, 0.99))
        );
    }
    f
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let total: u64 = std::env::var("HOLDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sled,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut results = Vec::new();
        for name in backends.split(',') {
            let place = match name.trim() {
                "sled" => Place::Sled(tempfile::tempdir().unwrap()),
                "postgres" => Place::Postgres(common::postgres::database()),
                other => panic!("BACKENDS: unknown backend {other:?}"),
            };
            results.push((place.name(), measure(&place, total).await));
        }
        if let [(_, sled), (_, pg)] = &results[..] {
            let r = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
            println!(
                "postgres / sled: creation p50 {:.2}x, p99 {:.2}x; fill {:.2}x the rate; first page p50 {:.2}x; start-up {:.2}x; approve to answer p50 {:.2}x, p99 {:.2}x",
                r(sled.create_p50, pg.create_p50),
                r(sled.create_p99, pg.create_p99),
                pg.fill_per_sec / sled.fill_per_sec,
                r(sled.page_p50, pg.page_p50),
                r(sled.startup, pg.startup),
                r(sled.release_p50, pg.release_p50),
                r(sled.release_p99, pg.release_p99)
            );
        }
    });
}
