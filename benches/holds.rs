//! The hold store's costs, on this machine's disk: hold creation latency
//! including the durable flush (p50/p99), then with a large pending queue
//! (default 100,000 holds) the first page of the pending list, start-up
//! (open + recovery), and store size per hold.
//!
//! `cargo bench --bench holds` — `HOLDS=20000` for a shorter run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use airlock::holds::store::{ListFilter, system_clock};
use airlock::holds::{State, Store};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
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

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let total: u64 = std::env::var("HOLDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = Store::open(&path, system_clock()).unwrap();
        // One agent at a time: the latency an agent waits for its held answer.
        let mut lat = Vec::new();
        for i in 0..1000 {
            let t = Instant::now();
            store
                .create(support::pending_hold(i), support::mail_body(i), u64::MAX)
                .await
                .unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "hold creation incl. flush, sequential (1,000): p50 {:.2} ms, p99 {:.2} ms",
            pct(&lat, 0.5).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3
        );
        // Many agents at once (flushes are shared): fill the queue.
        let t = Instant::now();
        let mut next = 1000;
        while next < total {
            let batch: Vec<_> = (next..(next + 64).min(total))
                .map(|i| {
                    let s = store.clone();
                    tokio::spawn(async move {
                        s.create(support::pending_hold(i), support::mail_body(i), u64::MAX)
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
        let fill = t.elapsed();
        println!(
            "filled to {total} pending holds, 64 at a time: {:.0} holds/s",
            (total - 1000) as f64 / fill.as_secs_f64()
        );
        let filter = ListFilter {
            state: Some(State::Pending),
            limit: 50,
            ..Default::default()
        };
        let mut page = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let (holds, _) = store.list(&filter).await.unwrap();
            page.push(t.elapsed());
            assert_eq!(holds.len(), 50);
        }
        page.sort();
        println!(
            "first page of pending (50 of {total}): p50 {:.2} ms, p99 {:.2} ms",
            pct(&page, 0.5).as_secs_f64() * 1e3,
            pct(&page, 0.99).as_secs_f64() * 1e3
        );
        store.flush().await.unwrap();
        drop(store);
        let size = dir_size(&path);
        println!(
            "store on disk: {:.1} MiB, {:.0} bytes per hold",
            size as f64 / 1048576.0,
            size as f64 / total as f64
        );
        let t = Instant::now();
        let store = Store::open(&path, system_clock()).unwrap();
        let to_send = store.recover().await.unwrap();
        println!(
            "start-up with {total} pending (open + recovery): {:.0} ms ({} to send)",
            t.elapsed().as_secs_f64() * 1e3,
            to_send.len()
        );
    });
}
