//! The store's contract, run against both backends: sled on a temporary
//! directory and PostgreSQL on the tests' private cluster (a fresh database
//! per test). Every test here runs twice, once per backend, with the same
//! expectations; what only a shared store can show (several instances on
//! one database) is at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use airlock::holds::store::{
    Clock, Created, ListFilter, OutboxItem, Outcome, Session, StoreError, system_clock,
};
use airlock::holds::{Hold, State, Store, StoredResponse};
use bytes::Bytes;

/// A store of one backend, and what keeps it alive.
struct Opened {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sled,
    Postgres,
}

async fn open(kind: Kind, clock: Clock) -> Opened {
    match kind {
        Kind::Sled => {
            let dir = tempfile::tempdir().unwrap();
            Opened {
                store: Store::open(dir.path(), clock).unwrap(),
                _dir: Some(dir),
            }
        }
        Kind::Postgres => {
            let url = common::postgres::database();
            Opened {
                store: Store::connect(&url, &[], clock).await.unwrap(),
                _dir: None,
            }
        }
    }
}

/// A clock the test moves.
fn clock_at(ms: Arc<AtomicI64>) -> Clock {
    Arc::new(move || {
        jiff::Timestamp::from_millisecond(ms.load(Ordering::SeqCst))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    })
}

fn hold(store: &Store, agent: &str, n: u32, window_secs: i64) -> Hold {
    let now = store.now();
    Hold {
        id: uuid::Uuid::now_v7().to_string(),
        state: State::Pending,
        rule: "mail-send".into(),
        label: "Outbound client message".into(),
        summary: "to \u{0}someone".into(),
        agent: agent.into(),
        agent_label: None,
        trigger: String::new(),
        method: "POST".into(),
        url: "https://mail.test/send".into(),
        headers: vec![
            ("authorization".into(), "Bearer secret".into()),
            ("content-type".into(), "application/json".into()),
            ("content-encoding".into(), "gzip".into()),
        ],
        secret_headers: Vec::new(),
        body_size: 4,
        content_type: Some("application/json".into()),
        created_at: now,
        expires_at: now + jiff::SignedDuration::from_secs(window_secs),
        decided_at: None,
        decided_by: None,
        note: None,
        reason: None,
        edited: false,
        sending: false,
        response: None,
        error: None,
        status_token: airlock::holds::random_token(),
        fingerprint: format!("{agent}-{n}"),
        idempotency_key: Some(format!("key-{n}")),
        replayed: false,
        max_wait_secs: 0,
        reviewers: Vec::new(),
        backup: Vec::new(),
        escalate_at: None,
        escalated_at: None,
        approvals_needed: 1,
        approvals: Vec::new(),
        slack_channel: None,
    }
}

async fn create(store: &Store, h: Hold, max: u64) -> Result<Created, StoreError> {
    store.create(h, Bytes::from_static(b"body"), max).await
}

async fn new_hold(store: &Store, h: Hold) -> Hold {
    match create(store, h, 1000).await.unwrap() {
        Created::New(h) => h,
        other => panic!("{other:?}"),
    }
}

/// Each contract test, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sled() {
                    super::$name(super::Kind::Sled).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::Kind::Postgres).await;
                }
            }
        )*
    };
}

contract!(
    the_pending_cap_counts_each_agent_and_frees_a_place_on_every_way_out,
    an_idempotency_key_names_one_request_of_one_agent,
    a_retry_joins_the_hold_that_stands,
    of_thirty_concurrent_approvals_one_succeeds,
    a_hold_is_claimed_once_and_settled_with_its_credentials_purged,
    an_edited_body_replaces_the_draft,
    windows_expire_and_escalate_once,
    lists_page_through_pending_by_expiry_and_others_newest_first,
    the_audit_chain_verifies_and_finds_tampering,
    the_outbox_queues_once_and_moves_deliveries_by_compare_and_swap,
    sessions_and_the_admin_token_are_kept,
    subscribers_hear_of_each_transition,
    start_up_sends_approved_holds_nobody_claimed,
    a_quorum_needs_distinct_approvers_and_any_dismissal_ends_it,
);

async fn a_quorum_needs_distinct_approvers_and_any_dismissal_ends_it(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let mut two = hold(store, "a", 1, 60);
    two.approvals_needed = 2;
    let h = new_hold(store, two).await;
    let mut events = store.subscribe();
    let first = store
        .approve(&h.id, "alice", Some("looks right".into()), None)
        .await
        .unwrap();
    assert_eq!(first.state, State::Pending, "1 of 2");
    assert_eq!(first.approvals.len(), 1);
    assert_eq!(first.approvals[0].by, "alice");
    assert_eq!(first.approvals[0].note.as_deref(), Some("looks right"));
    assert!(
        store.claim(&h.id).await.unwrap().is_none(),
        "nothing to send yet"
    );
    assert!(matches!(
        store.approve(&h.id, "alice", None, None).await,
        Err(StoreError::AlreadyApproved { needed: 2 })
    ));
    // An edit withdraws earlier approvals: they were of another text.
    let edited = store
        .approve(&h.id, "bob", None, Some(Bytes::from("changed")))
        .await
        .unwrap();
    assert_eq!(edited.state, State::Pending);
    assert_eq!(edited.approvals.len(), 1);
    assert_eq!(edited.approvals[0].by, "bob");
    let done = store.approve(&h.id, "alice", None, None).await.unwrap();
    assert_eq!(done.state, State::Approved);
    assert_eq!(done.decided_by.as_deref(), Some("alice"));
    let by: Vec<&str> = done.approvals.iter().map(|a| a.by.as_str()).collect();
    assert_eq!(by, ["bob", "alice"]);
    assert!(store.claim(&h.id).await.unwrap().is_some());
    let heard: Vec<&str> = [
        events.recv().await.unwrap(),
        events.recv().await.unwrap(),
        events.recv().await.unwrap(),
    ]
    .iter()
    .map(|e| e.event)
    .collect();
    assert_eq!(heard, ["approval", "approval", "approved"]);
    let records = store.audit_after(1, 10).await.unwrap();
    assert_eq!(records[0].detail["approvals"], 1);
    assert_eq!(records[0].detail["needed"], 2);
    assert_eq!(records[1].detail["approvals_withdrawn"][0], "alice");
    assert_eq!(store.verify_audit().await.unwrap(), 4);

    // Any dismissal ends it, even after an approval.
    let mut three = hold(store, "a", 2, 60);
    three.approvals_needed = 3;
    let h = new_hold(store, three).await;
    store.approve(&h.id, "alice", None, None).await.unwrap();
    let dismissed = store.dismiss(&h.id, "carol", None).await.unwrap();
    assert_eq!(dismissed.state, State::Dismissed);
    assert!(matches!(
        store.approve(&h.id, "bob", None, None).await,
        Err(StoreError::NotPending(State::Dismissed))
    ));
}

async fn the_pending_cap_counts_each_agent_and_frees_a_place_on_every_way_out(kind: Kind) {
    let now = Arc::new(AtomicI64::new(jiff::Timestamp::now().as_millisecond()));
    let o = open(kind, clock_at(now.clone())).await;
    let store = &o.store;
    let mut ids = Vec::new();
    for n in 0..3 {
        match create(store, hold(store, "a", n, 60 + i64::from(n)), 3).await {
            Ok(Created::New(h)) => ids.push(h.id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.pending_of("a").await.unwrap(), 3);
    match create(store, hold(store, "a", 9, 60), 3).await {
        Err(StoreError::TooManyPending {
            max: 3,
            soonest_expiry: Some(at),
        }) => assert_eq!(at, store.get(&ids[0]).await.unwrap().unwrap().expires_at),
        other => panic!("{other:?}"),
    }
    // An identical request is not a new hold: it is never refused.
    assert!(matches!(
        create(store, hold(store, "a", 1, 60), 3).await,
        Ok(Created::Existing(h)) if h.id == ids[1]
    ));
    assert!(matches!(
        create(store, hold(store, "b", 0, 60), 3).await,
        Ok(Created::New(_))
    ));
    assert_eq!(store.pending_of("b").await.unwrap(), 1);
    store.dismiss(&ids[0], "alice", None).await.unwrap();
    assert_eq!(store.pending_of("a").await.unwrap(), 2);
    store.approve(&ids[1], "alice", None, None).await.unwrap();
    assert_eq!(store.pending_of("a").await.unwrap(), 1);
    now.fetch_add(120_000, Ordering::SeqCst);
    assert_eq!(store.expire_due().await.unwrap().len(), 2);
    assert_eq!(store.pending_of("a").await.unwrap(), 0);
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert!(matches!(
        create(store, hold(store, "a", 9, 60), 3).await,
        Ok(Created::New(_))
    ));
}

async fn an_idempotency_key_names_one_request_of_one_agent(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let first = new_hold(store, hold(store, "a", 1, 60)).await;
    let mut changed = hold(store, "a", 2, 60);
    changed.idempotency_key = first.idempotency_key.clone();
    assert!(matches!(
        create(store, changed, 20).await,
        Err(StoreError::IdempotencyKeyReused)
    ));
    assert_eq!(store.pending_of("a").await.unwrap(), 1, "nothing stored");
    let mut other = hold(store, "b", 1, 60);
    other.idempotency_key = first.idempotency_key.clone();
    assert!(matches!(create(store, other, 20).await, Ok(Created::New(h)) if h.id != first.id));
}

async fn a_retry_joins_the_hold_that_stands(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let first = new_hold(store, hold(store, "a", 1, 60)).await;
    assert!(matches!(
        create(store, hold(store, "a", 1, 60), 20).await.unwrap(),
        Created::Existing(h) if h.id == first.id
    ));
    // Released: the stored answer goes to one retry, then a retry is new.
    store.approve(&first.id, "alice", None, None).await.unwrap();
    store.claim(&first.id).await.unwrap().unwrap();
    store
        .finish(
            &first.id,
            Outcome::Released(StoredResponse {
                status: 202,
                headers: Vec::new(),
                body: b"ok".to_vec(),
                truncated: false,
            }),
        )
        .await
        .unwrap();
    assert!(store.mark_replayed(&first.id).await.unwrap());
    assert!(!store.mark_replayed(&first.id).await.unwrap());
    assert!(matches!(
        create(store, hold(store, "a", 1, 60), 20).await.unwrap(),
        Created::New(h) if h.id != first.id
    ));
}

async fn of_thirty_concurrent_approvals_one_succeeds(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = o.store.clone();
    let h = new_hold(&store, hold(&store, "a", 1, 60)).await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (s, id) = (store.clone(), h.id.clone());
            tokio::spawn(async move { s.approve(&id, &format!("r{i}"), None, None).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::NotPending(State::Approved)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    let records = store.audit_after(0, 100).await.unwrap();
    assert_eq!(records.iter().filter(|r| r.event == "approved").count(), 1);
    assert!(matches!(
        store.dismiss(&h.id, "bob", None).await,
        Err(StoreError::NotPending(State::Approved))
    ));
    assert!(matches!(
        store.approve("not-an-id", "bob", None, None).await,
        Err(StoreError::NotFound)
    ));
}

async fn a_hold_is_claimed_once_and_settled_with_its_credentials_purged(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = o.store.clone();
    let h = new_hold(&store, hold(&store, "a", 1, 60)).await;
    assert!(store.claim(&h.id).await.unwrap().is_none(), "not approved");
    store.approve(&h.id, "alice", None, None).await.unwrap();
    let claims: Vec<_> = (0..10)
        .map(|_| {
            let (s, id) = (store.clone(), h.id.clone());
            tokio::spawn(async move { s.claim(&id).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.unwrap());
    }
    assert_eq!(claimed.len(), 1, "one claim");
    let (sending, body) = claimed.remove(0);
    assert!(sending.sending);
    assert_eq!(&body[..], b"body");
    assert!(
        sending.headers.iter().any(|(k, _)| k == "authorization"),
        "credentials are kept until the send"
    );
    let done = store
        .finish(&h.id, Outcome::Failed("connection refused".into()))
        .await
        .unwrap();
    assert_eq!(done.state, State::Failed);
    let stored = store.get(&h.id).await.unwrap().unwrap();
    assert_eq!(stored.error.as_deref(), Some("connection refused"));
    assert!(
        !stored.headers.iter().any(|(k, _)| k == "authorization"),
        "credentials are purged once final"
    );
    assert!(store.claim(&h.id).await.unwrap().is_none());
    assert!(
        store
            .finish(&h.id, Outcome::Failed("again".into()))
            .await
            .is_err()
    );
}

async fn an_edited_body_replaces_the_draft(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let h = new_hold(store, hold(store, "a", 1, 60)).await;
    assert_eq!(store.body(&h.id).await.unwrap().unwrap(), "body");
    let approved = store
        .approve(
            &h.id,
            "alice",
            Some("fixed".into()),
            Some(Bytes::from("edited!")),
        )
        .await
        .unwrap();
    assert!(approved.edited);
    assert_eq!(approved.body_size, 7);
    assert!(
        !approved
            .headers
            .iter()
            .any(|(k, _)| k == "content-encoding")
    );
    assert_eq!(store.body(&h.id).await.unwrap().unwrap(), "edited!");
    let record = store.audit_after(1, 1).await.unwrap().remove(0);
    assert_eq!(record.event, "approved");
    assert_eq!(record.detail["edited"], true);
    assert!(record.detail["body_sha256_before"].is_string());
    let by_token = store.by_token(&h.status_token).await.unwrap().unwrap();
    assert_eq!(by_token.id, h.id);
    assert!(store.by_token("nope").await.unwrap().is_none());
    assert!(store.get("nope").await.unwrap().is_none());
    assert!(store.body("nope").await.unwrap().is_none());
}

async fn windows_expire_and_escalate_once(kind: Kind) {
    let now = Arc::new(AtomicI64::new(jiff::Timestamp::now().as_millisecond()));
    let o = open(kind, clock_at(now.clone())).await;
    let store = o.store.clone();
    let mut h = hold(&store, "a", 1, 60);
    h.escalate_at = Some(store.now() + jiff::SignedDuration::from_secs(30));
    h.backup = vec!["bob".into()];
    let h = new_hold(&store, h).await;
    let short = new_hold(&store, hold(&store, "a", 2, 10)).await;
    assert_eq!(store.next_expiry().await.unwrap(), Some(short.expires_at));
    assert_eq!(store.next_escalation().await.unwrap(), h.escalate_at);
    assert!(store.expire_due().await.unwrap().is_empty());
    now.fetch_add(31_000, Ordering::SeqCst);
    // Sweeps racing each other still change each hold once.
    let (a, b) = tokio::join!(store.escalate_due(), store.escalate_due());
    let escalated: Vec<Hold> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].id, h.id);
    assert!(escalated[0].escalated_at.is_some());
    assert_eq!(store.next_escalation().await.unwrap(), None);
    let (a, b) = tokio::join!(store.expire_due(), store.expire_due());
    let expired: Vec<Hold> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(expired.len(), 1, "the short window ended, once");
    assert_eq!(expired[0].id, short.id);
    now.fetch_add(60_000, Ordering::SeqCst);
    assert_eq!(store.expire_due().await.unwrap().len(), 1);
    assert!(store.expire_due().await.unwrap().is_empty());
    assert_eq!(store.next_expiry().await.unwrap(), None);
    let records = store.audit_after(0, 100).await.unwrap();
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["held", "held", "escalated", "expired", "expired"]);
    assert_eq!(
        store.get(&h.id).await.unwrap().unwrap().state,
        State::Expired
    );
}

async fn lists_page_through_pending_by_expiry_and_others_newest_first(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let mut made = Vec::new();
    for n in 0..7u32 {
        // Windows out of creation order.
        let h = new_hold(store, hold(store, "a", n, 100 + i64::from((n * 3) % 7))).await;
        made.push(h);
    }
    store.dismiss(&made[6].id, "alice", None).await.unwrap();
    let mut pending = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store
            .list(&ListFilter {
                state: Some(State::Pending),
                limit: 2,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        pending.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pending.len(), 6);
    assert!(
        pending
            .windows(2)
            .all(|w| w[0].expires_at <= w[1].expires_at)
    );
    let (all, _) = store
        .list(&ListFilter {
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, [&made[6].id, &made[5].id, &made[4].id], "newest first");
    let (dismissed, next) = store
        .list(&ListFilter {
            state: Some(State::Dismissed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dismissed.len(), 1);
    assert_eq!(next, None);
    let (other_rule, _) = store
        .list(&ListFilter {
            rule: Some("other".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other_rule.is_empty());
    let (n, oldest) = store.pending_overview().await.unwrap();
    assert_eq!(n, 6);
    // To the microsecond, PostgreSQL's precision.
    assert_eq!(
        oldest.map(|t| t.as_microsecond()),
        Some(made[0].created_at.as_microsecond())
    );
    let since = store.since(made[3].created_at).await.unwrap();
    assert_eq!(since.len(), 4);
    assert_eq!(since[0].id, made[6].id);
}

async fn the_audit_chain_verifies_and_finds_tampering(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    assert_eq!(store.verify_audit().await.unwrap(), 0);
    assert_eq!(store.last_audit_seq().await.unwrap(), 0);
    let h = new_hold(store, hold(store, "a", 1, 60)).await;
    store.approve(&h.id, "alice", None, None).await.unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), 2);
    assert_eq!(store.last_audit_seq().await.unwrap(), 2);
    let records = store.audit_after(0, 10).await.unwrap();
    assert_eq!(records[1].prev, records[0].hash);
    assert_eq!(records[0].detail["agent"], "a");
    let mut record = records[1].clone();
    record.detail = serde_json::json!({"note": "rewritten"});
    store.overwrite_audit_record(&record).await.unwrap();
    let err = store.verify_audit().await.unwrap_err();
    assert_eq!(err.seq, 2);
}

async fn the_outbox_queues_once_and_moves_deliveries_by_compare_and_swap(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let item = |receiver: &str, payload: &[u8]| OutboxItem {
        receiver: receiver.into(),
        payload: payload.to_vec(),
    };
    let from = store.notify_cursor().await.unwrap();
    assert_eq!(from, 0);
    assert!(
        store
            .enqueue(&[item("a", b"1"), item("b", b"2")], from, 7)
            .await
            .unwrap()
    );
    assert!(
        !store
            .enqueue(&[item("a", b"again")], from, 7)
            .await
            .unwrap(),
        "the cursor moved: nothing is queued twice"
    );
    assert_eq!(store.notify_cursor().await.unwrap(), 7);
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    assert!(store.outbox_next_due().await.unwrap().is_some());
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let due = store
        .outbox_due(later, 10, 10, &mut |_, r| r == "b")
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let entry = &due[0];
    assert_eq!(entry.item, Some(item("b", b"2")));
    let far = later + jiff::SignedDuration::from_secs(3600);
    let moved = store
        .outbox_reschedule(&entry.key, far, &item("b", b"3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.id(), entry.key.id());
    assert_ne!(moved, entry.key);
    assert_eq!(
        store
            .outbox_reschedule(&entry.key, far, &item("b", b"4"))
            .await
            .unwrap(),
        None,
        "a key already moved is not moved again"
    );
    let due = store
        .outbox_due(later, 10, 10, &mut |_, _| true)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the rescheduled delivery is not due yet");
    let much_later = far + jiff::SignedDuration::from_secs(1);
    let due_all = store
        .outbox_due(much_later, 10, 10, &mut |_, _| true)
        .await
        .unwrap();
    assert_eq!(due_all.len(), 2);
    assert!(due_all.iter().any(|e| e.item == Some(item("b", b"3"))));
    store.outbox_remove(&moved).await.unwrap();
    store.outbox_remove(&due[0].key).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

async fn sessions_and_the_admin_token_are_kept(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let session = Session {
        reviewer: "alice".into(),
        admin: false,
        csrf: "c".into(),
        expires_at: jiff::Timestamp::now(),
    };
    assert_eq!(store.session_get("abc").await.unwrap(), None);
    store.session_put("abc", &session).await.unwrap();
    assert_eq!(store.session_get("abc").await.unwrap(), Some(session));
    store.session_remove("abc").await.unwrap();
    assert_eq!(store.session_get("abc").await.unwrap(), None);
    assert_eq!(store.admin_token_hash().await.unwrap(), None);
    assert_eq!(store.set_admin_token_hash(&[7; 32]).await.unwrap(), [7; 32]);
    assert_eq!(
        store.set_admin_token_hash(&[8; 32]).await.unwrap(),
        [7; 32],
        "the first one stays"
    );
    assert_eq!(store.admin_token_hash().await.unwrap(), Some([7; 32]));
}

async fn subscribers_hear_of_each_transition(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let mut events = store.subscribe();
    let h = new_hold(store, hold(store, "a", 1, 60)).await;
    store
        .dismiss(&h.id, "alice", Some("no".into()))
        .await
        .unwrap();
    let mut heard = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.id, h.id);
        heard.push((e.event, e.state, e.actor));
    }
    assert_eq!(
        heard,
        [
            ("held", State::Pending, "airlock".to_owned()),
            ("dismissed", State::Dismissed, "alice".to_owned())
        ]
    );
}

async fn start_up_sends_approved_holds_nobody_claimed(kind: Kind) {
    let o = open(kind, system_clock()).await;
    let store = &o.store;
    let h = new_hold(store, hold(store, "a", 1, 60)).await;
    let other = new_hold(store, hold(store, "a", 2, 60)).await;
    store.approve(&h.id, "alice", None, None).await.unwrap();
    assert_eq!(store.recover().await.unwrap(), vec![h.id.clone()]);
    assert_eq!(
        store.get(&other.id).await.unwrap().unwrap().state,
        State::Pending
    );
    // While running, a hold its decider is about to send is left to it.
    assert!(store.recover_claims(false).await.unwrap().is_empty());
}

// ---- only a shared store: several instances on one database ------------

async fn two_instances() -> (Store, Store, String) {
    let url = common::postgres::database();
    let a = Store::connect(&url, &[], system_clock()).await.unwrap();
    let b = Store::connect(&url, &[], system_clock()).await.unwrap();
    assert_ne!(a.instance(), b.instance());
    (a, b, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_database_share_one_queue_one_chain_and_one_decision() {
    let (a, b, _url) = two_instances().await;
    let mut heard_by_b = b.subscribe();
    let h = new_hold(&a, hold(&a, "agent", 1, 60)).await;
    // B hears of A's hold within a second, and lists it.
    let e = tokio::time::timeout(Duration::from_secs(1), heard_by_b.recv())
        .await
        .expect("heard within a second")
        .unwrap();
    assert_eq!((e.event, e.id.as_str()), ("held", h.id.as_str()));
    assert_eq!(b.get(&h.id).await.unwrap().unwrap().id, h.id);
    // The same request through B joins A's hold.
    assert!(matches!(
        create(&b, hold(&b, "agent", 1, 60), 20).await.unwrap(),
        Created::Existing(x) if x.id == h.id
    ));
    // Thirty approvals split over both: one wins.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = h.id.clone();
            tokio::spawn(async move { s.approve(&id, &format!("r{i}"), None, None).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap().is_ok());
    }
    assert_eq!(won, 1);
    // Both claim at once: one sends.
    let (ca, cb) = tokio::join!(a.claim(&h.id), b.claim(&h.id));
    assert_eq!(
        usize::from(ca.unwrap().is_some()) + usize::from(cb.unwrap().is_some()),
        1
    );
    // Holds made through both at once keep one chain.
    let tasks: Vec<_> = (0..20u32)
        .map(|n| {
            let s = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let h = hold(&s, &format!("agent-{n}"), n, 60);
                create(&s, h, 20).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.verify_audit().await.unwrap(), 22);
    assert_eq!(b.verify_audit().await.unwrap(), 22);
    // Each instance pages the other's holds alike.
    let all = ListFilter {
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(a.list(&all).await.unwrap().0.len(), 21);
    assert_eq!(b.list(&all).await.unwrap().0.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_an_instance_whose_lease_lapsed_is_interrupted_once() {
    let (a, b, url) = two_instances().await;
    let h = new_hold(&a, hold(&a, "agent", 1, 60)).await;
    a.approve(&h.id, "alice", None, None).await.unwrap();
    a.claim(&h.id).await.unwrap().unwrap();
    // A is alive: its claim stands.
    assert!(b.recover_claims(false).await.unwrap().is_empty());
    assert_eq!(b.get(&h.id).await.unwrap().unwrap().state, State::Approved);
    // A stops renewing (as a killed process would) and its lease lapses.
    let instance = a.instance().to_owned();
    drop(a);
    let db = url.rsplit('/').next().unwrap();
    common::postgres::cluster()
        .psql(
            db,
            &format!("UPDATE instances SET alive_until = now() - interval '1 second' WHERE id = '{instance}'"),
        )
        .unwrap();
    let mut events = b.subscribe();
    let c = Store::connect(&url, &[], system_clock()).await.unwrap();
    let (rb, rc) = tokio::join!(b.recover_claims(false), c.recover_claims(false));
    assert!(
        rb.unwrap().is_empty() && rc.unwrap().is_empty(),
        "never sent again"
    );
    let stored = b.get(&h.id).await.unwrap().unwrap();
    assert_eq!(stored.state, State::Interrupted);
    assert!(!stored.headers.iter().any(|(k, _)| k == "authorization"));
    let records = b.audit_after(0, 100).await.unwrap();
    assert_eq!(
        records.iter().filter(|r| r.event == "interrupted").count(),
        1,
        "interrupted once"
    );
    let e = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.event, "interrupted");
    assert!(b.claim(&h.id).await.unwrap().is_none());
    // held, approved, interrupted: a claim is no event.
    assert_eq!(b.verify_audit().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_is_never_part_of_an_error() {
    let err = Store::connect(
        "postgres://airlock:hunter2@127.0.0.1:1/airlock?connect_timeout=2",
        &[],
        system_clock(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
}
