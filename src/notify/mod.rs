//! Notifications: bring each decision to the people who own it, inside its
//! window, and tell them when it no longer needs them.
//!
//! Two tasks, both off the data path. The fan-out follows the audit log from
//! a cursor kept in the store: each record of a hold's life becomes one
//! delivery per interested sink (`[[notify]]`, and the personal `notify` URL
//! of the rule's reviewers, or of its backup on escalation), written to the
//! store's outbox in the same transaction that moves the cursor — so nothing
//! is lost across a crash or a restart and nothing is turned into deliveries
//! twice. The delivery task sends what is due, a few at a time per sink, each
//! attempt bounded by a timeout, and retries failures with exponential
//! backoff up to the sink's `max_attempts`.
//!
//! This module must never be waited on by the proxy: an agent's request
//! neither knows nor cares whether a sink is slow, down or hung. Delivery is
//! at least once (a crash mid-attempt repeats it); receivers deduplicate on
//! `Airlock-Delivery`.

pub mod message;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, NotifyFormat, NotifySink, RetryPolicy};
use crate::holds::audit::Record;
use crate::holds::store::{OutboxEntry, OutboxItem, OutboxKey};
use crate::holds::{Hold, Store, StoreError, hex};
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// Attempts in flight to one sink at once: a hung sink ties up only these.
const PER_SINK: usize = 4;
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Audit records turned into deliveries per transaction, and deliveries
/// started per pass.
const BATCH: usize = 256;
/// Due deliveries looked at per pass.
const SCAN: usize = 8192;
/// How long past an attempt's timeout its lease lasts.
const LEASE_MARGIN_MS: u64 = 5000;
/// How much of a receiver's answer is read (and then dropped).
const MAX_ANSWER: usize = 64 * 1024;

/// Where one kind of message goes.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    url: String,
    format: NotifyFormat,
    secret: Option<String>,
    retry: RetryPolicy,
    /// For `[[notify]]` sinks, the events subscribed to; personal hooks get
    /// what concerns their owner.
    events: Option<Vec<String>>,
}

impl From<&NotifySink> for Target {
    fn from(s: &NotifySink) -> Target {
        Target {
            name: s.name.clone(),
            url: s.url.clone(),
            format: s.format,
            secret: s.secret.clone(),
            retry: s.retry,
            events: Some(s.events.clone()),
        }
    }
}

/// One message on its way to one URL, as the outbox keeps it. The body is
/// fixed (and signed) when queued, so every retry sends the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    sink: String,
    url: String,
    body: String,
    signature: Option<String>,
    event: String,
    hold: String,
    sequence: u64,
    attempts: u32,
    max_attempts: u32,
    backoff_ms: u64,
    timeout_ms: u64,
    /// A call to the Slack app's Web API instead of a webhook: its body is
    /// made at attempt time from the hold as it is then.
    #[serde(default)]
    slack: Option<SlackCall>,
}

/// What a Slack app delivery does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SlackCall {
    /// Post the hold's message with its buttons.
    Post,
    /// Bring every message about the hold up to date.
    Update,
}

/// The Slack app's receiver name in the outbox.
const SLACK_APP: &str = "slack-app";

/// Why an attempt failed, and whether trying again can help.
struct Failure {
    message: String,
    permanent: bool,
}

pub struct Notifier {
    store: Store,
    upstream: Upstream,
    sinks: Vec<Target>,
    /// Reviewer name → personal hook.
    personal: HashMap<String, Target>,
    admins: Vec<String>,
    /// Who owns holds no rule matched: the admins and `[defaults]
    /// unmatched_reviewers`.
    unmatched_owners: Vec<String>,
    public_url: String,
    metrics: Arc<Metrics>,
    wake: tokio::sync::Notify,
    /// `[slack]`: the app that posts holds with buttons.
    slack: Option<crate::slack::Slack>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sinks", &self.sinks.len())
            .field("personal", &self.personal.len())
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, as `Airlock-Signature` carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    #[expect(
        clippy::expect_used,
        reason = "HMAC takes a key of any length: new_from_slice cannot fail"
    )]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

impl Notifier {
    pub fn new(
        config: &Config,
        store: Store,
        upstream: Upstream,
        public_url: String,
        metrics: Arc<Metrics>,
    ) -> Arc<Notifier> {
        let personal = config
            .reviewers
            .iter()
            .filter_map(|r| {
                let url = r.notify.clone()?;
                let format = personal_format(&url);
                Some((
                    r.name.clone(),
                    Target {
                        name: format!("reviewer:{}", r.name),
                        url,
                        format,
                        secret: None,
                        retry: RetryPolicy::default(),
                        events: None,
                    },
                ))
            })
            .collect();
        let admins: Vec<String> = config
            .reviewers
            .iter()
            .filter(|r| r.admin)
            .map(|r| r.name.clone())
            .collect();
        let mut unmatched_owners = admins.clone();
        for name in &config.defaults.unmatched_reviewers {
            if !unmatched_owners.contains(name) {
                unmatched_owners.push(name.clone());
            }
        }
        let slack = config
            .slack
            .clone()
            .map(|c| crate::slack::Slack::new(c, upstream.clone()));
        Arc::new(Notifier {
            slack,
            store,
            upstream,
            sinks: config.notify.iter().map(Target::from).collect(),
            personal,
            admins,
            unmatched_owners,
            public_url,
            metrics,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Starts the fan-out and the delivery tasks; both end when `stop` does.
    pub fn spawn(
        self: &Arc<Self>,
        stop: &watch::Receiver<bool>,
    ) -> [tokio::task::JoinHandle<()>; 2] {
        [
            tokio::spawn(self.clone().fan_out_loop(stop.clone())),
            tokio::spawn(self.clone().deliver_loop(stop.clone())),
        ]
    }

    async fn fan_out_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut events = self.store.subscribe();
        loop {
            if let Err(e) = self.fan_out().await {
                tracing::error!(error = %e, "queueing notifications failed; retrying");
            }
            tokio::select! {
                // Any event, or a lagged receiver: either way, read the log.
                _ = events.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Turns the audit records after the cursor into queued deliveries.
    async fn fan_out(&self) -> Result<(), StoreError> {
        loop {
            let cursor = self.store.notify_cursor().await?;
            let records = self.store.audit_after(cursor, BATCH).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(());
            };
            let mut queued = Vec::new();
            for record in &records {
                // One unreadable hold must not stop every later notification.
                let deliveries = match self.deliveries_for(record).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(seq = record.seq, hold = %record.hold, error = %e, "cannot notify about this audit record; skipped");
                        continue;
                    }
                };
                for d in deliveries {
                    queued.push(encode(&d)?);
                }
            }
            // Another instance on the same store may have queued these
            // first: then nothing is queued here, and the loop reads on.
            let queued_here = self.store.enqueue(&queued, cursor, last).await?;
            if queued_here && !queued.is_empty() {
                self.wake.notify_one();
            }
        }
    }

    /// Who hears of this record, and what each of them receives.
    async fn deliveries_for(&self, record: &Record) -> Result<Vec<Delivery>, StoreError> {
        let mut out = self.slack_deliveries(record).await?;
        out.extend(self.webhook_deliveries(record).await?);
        Ok(out)
    }

    /// The Slack app's part: post when a hold is made, update on every
    /// later step (a partial approval included).
    async fn slack_deliveries(&self, record: &Record) -> Result<Vec<Delivery>, StoreError> {
        let Some(slack) = &self.slack else {
            return Ok(Vec::new());
        };
        let call = match record.event.as_str() {
            "held" => SlackCall::Post,
            "approval" | "approved" | "dismissed" | "expired" | "released" | "failed"
            | "interrupted" => SlackCall::Update,
            _ => return Ok(Vec::new()),
        };
        let Some(hold) = self.store.get(&record.hold).await? else {
            return Ok(Vec::new());
        };
        if slack.channel_for(&hold).is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![Delivery {
            sink: SLACK_APP.to_owned(),
            url: String::new(),
            body: String::new(),
            signature: None,
            event: record.event.clone(),
            hold: hold.id,
            sequence: record.seq,
            attempts: 0,
            max_attempts: 12,
            backoff_ms: 1000,
            timeout_ms: 10_000,
            slack: Some(call),
        }])
    }

    /// The webhooks' part: `[[notify]]` sinks and personal hooks.
    async fn webhook_deliveries(&self, record: &Record) -> Result<Vec<Delivery>, StoreError> {
        let Some(event) = message::event_of(&record.event) else {
            return Ok(Vec::new());
        };
        if self.sinks.is_empty() && self.personal.is_empty() {
            return Ok(Vec::new());
        }
        let mut targets: Vec<&Target> = self
            .sinks
            .iter()
            .filter(|t| {
                t.events
                    .as_ref()
                    .is_some_and(|e| e.iter().any(|e| e == event))
            })
            .collect();
        let Some(hold) = self.store.get(&record.hold).await? else {
            return Ok(Vec::new());
        };
        for name in self.people_for(event, &hold) {
            if let Some(t) = self.personal.get(name)
                && !targets.iter().any(|o| o.url == t.url)
            {
                targets.push(t);
            }
        }
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let body = if event == message::EXPIRED {
            self.store.body(&hold.id).await?
        } else {
            None
        };
        let mut json_doc: Option<String> = None;
        let mut slack_doc: Option<String> = None;
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let text = match t.format {
                NotifyFormat::Json => json_doc
                    .get_or_insert_with(|| {
                        message::json(event, record, &hold, &self.public_url, body.as_deref())
                            .to_string()
                    })
                    .clone(),
                NotifyFormat::Slack => slack_doc
                    .get_or_insert_with(|| {
                        message::slack(record, &hold, &self.public_url).to_string()
                    })
                    .clone(),
            };
            out.push(Delivery {
                sink: t.name.clone(),
                url: t.url.clone(),
                signature: t.secret.as_deref().map(|s| signature(s, text.as_bytes())),
                body: text,
                event: event.to_owned(),
                hold: hold.id.clone(),
                sequence: record.seq,
                attempts: 0,
                max_attempts: t.retry.max_attempts,
                backoff_ms: millis(t.retry.backoff),
                timeout_ms: millis(t.retry.timeout),
                slack: None,
            });
        }
        Ok(out)
    }

    /// The reviewers whose personal hooks hear of `event`: the rule's
    /// reviewers (admins when it names none; admins and `[defaults]
    /// unmatched_reviewers` when no rule matched) from the start, its backup
    /// from escalation on, and all of them when it is over.
    fn people_for<'a>(&'a self, event: &str, hold: &'a Hold) -> Vec<&'a String> {
        let owners = if hold.rule == crate::holds::UNMATCHED_RULE {
            &self.unmatched_owners
        } else if hold.reviewers.is_empty() {
            &self.admins
        } else {
            &hold.reviewers
        };
        match event {
            message::HELD => owners.iter().collect(),
            // Whoever already approved (short of a quorum) is not asked again.
            message::ESCALATED => hold
                .backup
                .iter()
                .filter(|b| !hold.approvals.iter().any(|a| &a.by == *b))
                .collect(),
            message::DECIDED | message::EXPIRED => {
                let mut people: Vec<&String> = owners.iter().collect();
                if hold.escalated_at.is_some() {
                    people.extend(hold.backup.iter().filter(|b| !owners.contains(b)));
                }
                people
            }
            _ => Vec::new(),
        }
    }

    async fn deliver_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Owned by this loop, so attempts still running end with it at
        // shutdown (their leases bring them back after a restart).
        let mut attempts: JoinSet<(String, u64)> = JoinSet::new();
        let mut in_flight: BTreeMap<String, usize> = BTreeMap::new();
        // Deliveries being attempted now: never leased twice at once.
        let mut leased: HashSet<u64> = HashSet::new();
        loop {
            let now = jiff::Timestamp::now();
            let mut saturated = false;
            let mut picked: BTreeMap<String, usize> = BTreeMap::new();
            // Pick by the receiver's name alone (no parsing), skipping
            // receivers already at their limit, so a hung receiver's backlog
            // never hides another's deliveries.
            let mut take = |key: &OutboxKey, sink: &str| {
                let id = key.id();
                let busy = in_flight.get(sink).copied().unwrap_or(0)
                    + picked.get(sink).copied().unwrap_or(0);
                if busy >= PER_SINK || leased.contains(&id) {
                    saturated = true;
                    return false;
                }
                *picked.entry(sink.to_owned()).or_default() += 1;
                true
            };
            let due = self.store.outbox_due(now, BATCH, SCAN, &mut take).await;
            match due {
                Ok(due) => {
                    for entry in due {
                        self.start_attempt(now, entry, &mut attempts, &mut in_flight, &mut leased)
                            .await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading the notification outbox failed"),
            }
            let wait = if saturated {
                Duration::from_secs(1)
            } else {
                match self.store.outbox_next_due().await {
                    Ok(Some(at)) => {
                        let ms = at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
                        Duration::from_millis(u64::try_from(ms.max(10)).unwrap_or(10))
                    }
                    _ => Duration::from_secs(5),
                }
                .min(Duration::from_secs(5))
            };
            tokio::select! {
                Some(done) = attempts.join_next() => {
                    if let Ok((sink, id)) = done {
                        leased.remove(&id);
                        if let Some(n) = in_flight.get_mut(&sink) {
                            *n = n.saturating_sub(1);
                        }
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Leases one due delivery and starts its attempt.
    async fn start_attempt(
        self: &Arc<Self>,
        now: jiff::Timestamp,
        entry: OutboxEntry,
        attempts: &mut JoinSet<(String, u64)>,
        in_flight: &mut BTreeMap<String, usize>,
        leased: &mut HashSet<u64>,
    ) {
        let OutboxEntry { key, item } = entry;
        let mut d = match item
            .ok_or_else(|| "no receiver name".to_owned())
            .and_then(|i| decode(&i.payload))
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "unreadable notification in the outbox; dropped");
                let _ = self.store.outbox_remove(&key).await;
                return;
            }
        };
        d.attempts += 1;
        // The lease: should airlock stop mid-attempt, the delivery is due
        // again once the attempt would have timed out.
        let lease = after(
            now,
            Duration::from_millis(d.timeout_ms.saturating_add(LEASE_MARGIN_MS)),
        );
        let rescheduled = match encode(&d) {
            Ok(b) => self.store.outbox_reschedule(&key, lease, &b).await,
            Err(e) => Err(e),
        };
        let key = match rescheduled {
            Ok(Some(k)) => k,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "notification outbox failed");
                return;
            }
        };
        let id = key.id();
        leased.insert(id);
        *in_flight.entry(d.sink.clone()).or_default() += 1;
        let this = self.clone();
        attempts.spawn(async move {
            let sink = d.sink.clone();
            this.attempt_and_settle(key, d).await;
            (sink, id)
        });
    }

    /// One attempt, then: forget it (sent, or failed for good) or put it
    /// back for its next try.
    async fn attempt_and_settle(&self, key: OutboxKey, d: Delivery) {
        match self.attempt(&d, key.id()).await {
            Ok(()) => {
                self.metrics.notify_attempt(&d.sink, true, false);
                tracing::debug!(sink = %d.sink, event = %d.event, hold = %d.hold, attempt = d.attempts, "notification delivered");
                if let Err(e) = self.store.outbox_remove(&key).await {
                    tracing::error!(error = %e, "notification outbox failed");
                }
            }
            Err(f) if f.permanent || d.attempts >= d.max_attempts => {
                self.metrics.notify_attempt(&d.sink, false, true);
                tracing::error!(
                    sink = %d.sink, event = %d.event, hold = %d.hold, attempt = d.attempts,
                    error = %f.message,
                    "notification dropped: {}",
                    if f.permanent { "the receiver refused it" } else { "no attempts left" }
                );
                if let Err(e) = self.store.outbox_remove(&key).await {
                    tracing::error!(error = %e, "notification outbox failed");
                }
            }
            Err(f) => {
                self.metrics.notify_attempt(&d.sink, false, false);
                let delay = backoff(Duration::from_millis(d.backoff_ms), d.attempts);
                tracing::warn!(
                    sink = %d.sink, event = %d.event, hold = %d.hold, attempt = d.attempts,
                    retry_in_ms = millis(delay), error = %f.message,
                    "notification failed; will retry"
                );
                let due = after(jiff::Timestamp::now(), delay);
                let result = match encode(&d) {
                    Ok(b) => self.store.outbox_reschedule(&key, due, &b).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "notification outbox failed");
                }
                self.wake.notify_one();
            }
        }
    }

    /// One Slack Web API delivery, made from the hold as it is now.
    async fn attempt_slack(&self, d: &Delivery, call: SlackCall) -> Result<(), Failure> {
        let failed = |e: crate::slack::CallError| Failure {
            message: e.message,
            permanent: e.permanent,
        };
        let store_failed = |e: StoreError| Failure {
            message: e.to_string(),
            permanent: false,
        };
        let Some(slack) = &self.slack else {
            return Err(Failure {
                message: "[slack] is no longer configured".into(),
                permanent: true,
            });
        };
        let Some(hold) = self.store.get(&d.hold).await.map_err(store_failed)? else {
            return Ok(());
        };
        let message = crate::slack::message(&hold, &self.public_url);
        let posted = self
            .store
            .slack_messages(&hold.id)
            .await
            .map_err(store_failed)?;
        match call {
            SlackCall::Post => {
                let Some(channel) = slack.channel_for(&hold) else {
                    return Ok(());
                };
                // Posted already (an attempt that crashed after Slack took
                // it). A hold is posted once, and Slack answers with the
                // channel's id, which a configured `#name` never equals.
                if !posted.is_empty() {
                    return Ok(());
                }
                let mut body = message;
                body["channel"] = channel.into();
                let answer = slack
                    .call("chat.postMessage", &body)
                    .await
                    .map_err(failed)?;
                let (Some(channel), Some(ts)) = (answer["channel"].as_str(), answer["ts"].as_str())
                else {
                    return Err(Failure {
                        message: "Slack's answer to chat.postMessage has no channel and ts".into(),
                        permanent: true,
                    });
                };
                let posted = crate::slack::MessageRef {
                    channel: channel.to_owned(),
                    ts: ts.to_owned(),
                };
                self.store
                    .add_slack_message(&hold.id, &posted)
                    .await
                    .map_err(store_failed)
            }
            SlackCall::Update => {
                if posted.is_empty() {
                    // The post may still be on its way: try again later.
                    return Err(Failure {
                        message: "no Slack message about this hold yet".into(),
                        permanent: false,
                    });
                }
                for m in posted {
                    let mut body = message.clone();
                    body["channel"] = m.channel.into();
                    body["ts"] = m.ts.into();
                    slack.call("chat.update", &body).await.map_err(failed)?;
                }
                Ok(())
            }
        }
    }

    async fn attempt(&self, d: &Delivery, id: u64) -> Result<(), Failure> {
        if let Some(call) = d.slack {
            return self.attempt_slack(d, call).await;
        }
        let retryable = |message: String| Failure {
            message,
            permanent: false,
        };
        let mut req = Request::post(d.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("airlock/", env!("CARGO_PKG_VERSION")),
            )
            .header("airlock-event", d.event.as_str())
            .header("airlock-delivery", id.to_string());
        if let Some(sig) = &d.signature {
            req = req.header("airlock-signature", sig.as_str());
        }
        let req = req
            .body(crate::upstream::full(d.body.clone()))
            .map_err(|e| Failure {
                message: format!("cannot build the request: {e}"),
                permanent: true,
            })?;
        let timeout = Duration::from_millis(d.timeout_ms);
        let exchange = async {
            let res = self
                .upstream
                .send(req)
                .await
                .map_err(|e| retryable(e.to_string()))?;
            let status = res.status();
            // Read (a bounded part of) the answer so the connection can be
            // reused; its content does not matter.
            let mut body = res.into_body();
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > MAX_ANSWER {
                    break;
                }
            }
            Ok::<StatusCode, Failure>(status)
        };
        let status = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| retryable(format!("no answer within {} ms", d.timeout_ms)))??;
        if status.is_success() {
            return Ok(());
        }
        let message = format!("the receiver answered {status}");
        let permanent = status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS;
        Err(Failure { message, permanent })
    }
}

/// A delivery as the outbox keeps it, under its receiver's name so the
/// loop can schedule by receiver without parsing bodies.
fn encode(d: &Delivery) -> Result<OutboxItem, StoreError> {
    let payload = serde_json::to_vec(d)
        .map_err(|e| StoreError::Corrupt(format!("notification delivery: {e}")))?;
    Ok(OutboxItem {
        receiver: d.sink.clone(),
        payload,
    })
}

fn decode(payload: &[u8]) -> Result<Delivery, String> {
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

/// A personal hook has no format key: Slack's own hooks get Slack
/// messages, everything else the JSON document.
fn personal_format(url: &str) -> NotifyFormat {
    if url.starts_with("https://hooks.slack.com/") {
        NotifyFormat::Slack
    } else {
        NotifyFormat::Json
    }
}

/// The delay before attempt `attempts + 1`: `base`, doubled per failure.
fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn after(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_hooks_on_slack_get_slack_messages() {
        assert_eq!(
            personal_format("https://hooks.slack.com/services/T0/B0/x"),
            NotifyFormat::Slack
        );
        assert_eq!(
            personal_format("https://ops.example/hooks/slack"),
            NotifyFormat::Json
        );
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        let base = Duration::from_secs(2);
        assert_eq!(backoff(base, 1), Duration::from_secs(2));
        assert_eq!(backoff(base, 2), Duration::from_secs(4));
        assert_eq!(backoff(base, 5), Duration::from_secs(32));
        assert_eq!(backoff(base, 12), MAX_BACKOFF);
        assert_eq!(backoff(base, u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn outbox_items_are_filed_under_their_receiver() {
        let d = Delivery {
            sink: "reviewer:alice".into(),
            url: "https://hooks.example/x".into(),
            body: "{}".into(),
            signature: None,
            event: "held".into(),
            hold: "h".into(),
            sequence: 7,
            attempts: 2,
            max_attempts: 12,
            backoff_ms: 2000,
            timeout_ms: 10_000,
            slack: None,
        };
        let item = encode(&d).unwrap();
        assert_eq!(item.receiver, "reviewer:alice");
        let back = decode(&item.payload).unwrap();
        assert_eq!((back.sink, back.sequence, back.attempts), (d.sink, 7, 2));
        assert!(decode(b"short").is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
