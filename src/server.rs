//! Start-up and the accept loop: load rules and the CA, bind the proxy
//! listener, accept agent connections (under a connection limit) on each of
//! the proxy workers, threads with their own runtime that serve a connection
//! start to end, and stop on a signal. `airlock review` starts the same
//! server without the proxy: the page, the API, notifications, expiry and
//! escalation of a fleet's shared store.
//!
//! Nothing here interprets requests; a failure to start is returned with the
//! exit code it deserves (2 for bad configuration, 1 for the environment).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Reviewer};
use crate::holds::release::Releaser;
use crate::holds::store::{Clock, system_clock};
use crate::holds::{Store, StoreError};
use crate::proxy::Proxy;
use crate::proxy::held::Holding;
use crate::review::ReviewState;
use crate::rules::{RuleError, RuleSet};
use crate::tls::{Ca, LeafCache, TlsError};
use crate::upstream::Upstream;

/// How many hosts' leaf certificates stay minted.
const LEAF_CACHE_HOSTS: usize = 1024;
/// How long a stopping worker waits for its blocking jobs (DNS lookups).
const WORKER_EXIT: Duration = Duration::from_secs(1);
/// How long an upstream may take to answer a released hold.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for each listener's connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", join_rule_errors(.0))]
    Rules(Vec<RuleError>),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error(
        "[review] listen = {0} is not a loopback address and no [[reviewer]] is configured: add reviewers with token hashes, or keep the review server on 127.0.0.1"
    )]
    ReviewExposed(SocketAddr),
}

impl StartError {
    /// 2 for what the operator must fix in configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Rules(_)
            | StartError::Tls(_)
            | StartError::ReviewExposed(_)
            | StartError::Config(_) => 2,
            StartError::Bind { .. } | StartError::Store(_) => 1,
        }
    }
}

fn join_rule_errors(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads and compiles the rules the configuration names.
pub fn load_rules(config: &Config) -> Result<RuleSet, Vec<RuleError>> {
    let (rules, origin) = crate::rules::shipped::load(&config.rules.dir)?;
    if origin == crate::rules::shipped::Origin::Shipped {
        tracing::info!(
            "no {} directory: using the rule packs built into airlock; `airlock rules init` writes them out for editing",
            crate::rules::shipped::DEFAULT_DIR
        );
    }
    RuleSet::new(rules, config.defaults.unmatched)
}

/// A started airlock: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where agents connect (the real port when `listen` asked for 0);
    /// `None` for a review server.
    pub proxy_addr: Option<SocketAddr>,
    /// Where reviewers and the page connect.
    pub review_addr: SocketAddr,
    /// The CA whose leaves intercepted agents see; `None` for a review
    /// server, which never needs its key.
    pub ca: Option<Arc<Ca>>,
    pub store: Store,
    pub releaser: Arc<Releaser>,
    /// Reloads the rules (SIGHUP and the API use it too).
    pub reloader: crate::reload::Reloader,
    /// One permit per agent connection being served.
    connections: Arc<Semaphore>,
    max_connections: usize,
    grace: Duration,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Tells the proxy workers their connections may be dropped now.
    finish: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting; lets in-flight requests finish within the grace
    /// period (waiting agents get the held answer at once); flushes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.grace, self.connections.acquire_many(all)).await {
            Ok(_) => tracing::info!("all agent connections finished"),
            Err(_) => tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "shutdown grace period over; closing the connections still open"
            ),
        }
        let _ = self.finish.send(true);
        let workers = self.workers;
        // Each worker drops its runtime, and with it what is still open.
        let joined = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        });
        if tokio::time::timeout(WORKER_EXIT + SHUTDOWN_GRACE, joined)
            .await
            .is_err()
        {
            tracing::warn!("a proxy worker did not stop in time");
        }
        for task in self.tasks {
            // A connection that will not close must not keep airlock up.
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
    }
}

/// Loads everything, binds the listeners and starts serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with_clock(config, system_clock()).await
}

/// What a started airlock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `airlock run`: the proxy and the review server.
    Proxy,
    /// `airlock review`: the review server alone, for a fleet's shared
    /// store.
    Review,
}

/// [`start`] with the store reading time from `clock` (tests move it).
pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Running, StartError> {
    start_as(config, clock, Role::Proxy).await
}

/// Starts in `role`, the store reading time from `clock`.
pub async fn start_as(config: &Config, clock: Clock, role: Role) -> Result<Running, StartError> {
    let rules: crate::reload::SharedRules = Arc::new(arc_swap::ArcSwap::from_pointee(
        load_rules(config).map_err(StartError::Rules)?,
    ));
    let reloader = crate::reload::Reloader::new(
        config.rules.dir.clone(),
        config.defaults.unmatched,
        rules.clone(),
    );
    if config.reviewers.is_empty() && !config.review.listen.ip().is_loopback() {
        return Err(StartError::ReviewExposed(config.review.listen));
    }
    let store = Store::from_config(&config.store, clock).await?;
    match &config.store.url {
        Some(_) => {
            tracing::info!(instance = %store.instance(), "using the shared PostgreSQL store")
        }
        None => tracing::info!(path = %config.store.path.display(), "using the embedded store"),
    }
    if role == Role::Review {
        return start_review(config, store, reloader).await;
    }
    let (ca, created) = Ca::load_or_create(&config.tls.ca_dir)?;
    if created {
        tracing::info!(dir = %config.tls.ca_dir.display(), "created a new airlock CA; agents must trust {}", config.tls.ca_dir.join(crate::tls::ca::CERT_FILE).display());
    }
    let ca = Arc::new(ca);
    // Fix where notifications start before anything new is recorded: a
    // store that predates them does not replay its history to the sinks.
    store.notify_cursor().await?;
    let upstream = Upstream::new(&config.proxy)?;
    let credentials = Arc::new(
        crate::credentials::Credentials::new(&config.credentials).map_err(StartError::Config)?,
    );
    let releaser = Arc::new(Releaser::new(
        store.clone(),
        upstream.clone(),
        credentials.clone(),
        config.proxy.max_body,
        RELEASE_TIMEOUT,
    ));
    let (shutdown, stop) = watch::channel(false);
    let (finish, finished) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(config.proxy.max_connections));
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let leaves = Arc::new(LeafCache::new(ca.clone(), LEAF_CACHE_HOSTS)?);
    let holding = Arc::new(Holding {
        store: store.clone(),
        business_hours: config.business_hours.clone(),
        default_window: config.defaults.window,
        held_status: config.defaults.held_status,
        max_pending_per_agent: config.defaults.max_pending_per_agent,
        public_url: std::sync::OnceLock::new(),
        stop: stop.clone(),
    });
    let (listener, proxy_addr) = bind(config.proxy.listen).await?;
    let listener = listener.into_std().map_err(|source| StartError::Bind {
        addr: proxy_addr,
        source,
    })?;
    let transparent = match config.proxy.transparent_listen {
        Some(addr) => {
            let (l, bound) = bind(addr).await?;
            let l = l.into_std().map_err(|source| StartError::Bind {
                addr: bound,
                source,
            })?;
            Some((l, bound))
        }
        None => None,
    };
    let n_workers = worker_count(config);
    let agents: Arc<[crate::config::Agent]> = config.agents.clone().into();
    let mut proxies = Vec::with_capacity(n_workers);
    for _ in 0..n_workers {
        // Each worker has its own upstream pool: a connection it opens is
        // used by the thread that serves it, never handed across threads.
        proxies.push(Arc::new(Proxy {
            rules: rules.clone(),
            upstream: Upstream::new(&config.proxy)?,
            leaves: leaves.clone(),
            max_body: config.proxy.max_body,
            holding: holding.clone(),
            stop: stop.clone(),
            metrics: metrics.clone(),
            header_timeout: config.proxy.header_timeout,
            agents: agents.clone(),
            credentials: credentials.clone(),
        }));
    }
    let upstream_for_notify = upstream.clone();
    let (review_listener, review_addr) = bind(config.review.listen).await?;
    let url = public_url(config, review_addr);
    let reviewers = reviewers(config, &store, &url).await?;
    let _ = holding.public_url.set(url.clone());
    // Before serving: mid-send holds become interrupted, overdue ones expire,
    // approved-but-unclaimed ones are sent now.
    for id in store.recover().await? {
        releaser.spawn(id);
    }
    if let Some((_, addr)) = &transparent {
        tracing::info!(listen = %addr, "transparent interception listening");
    }
    tracing::info!(listen = %proxy_addr, rules = rules.load().rules().len(), unmatched = %rules.load().unmatched(), "airlock proxy listening");
    tracing::info!(listen = %review_addr, reviewers = reviewers.len(), "review server listening");
    let review = crate::review::api::router(Arc::new(ReviewState {
        store: store.clone(),
        releaser: releaser.clone(),
        reloader: reloader.clone(),
        reviewers,
        unmatched_reviewers: config.defaults.unmatched_reviewers.clone(),
        ca_pem: ca.cert_pem().to_owned(),
        shutdown: stop.clone(),
        secure_cookies: url.starts_with("https://"),
        metrics: metrics.clone(),
        leaf_stats: {
            let leaves = leaves.clone();
            crate::review::LeafStats(Arc::new(move || leaves.stats()))
        },
        trusted_header: trusted_header(config),
        slack: config
            .slack
            .clone()
            .map(|c| crate::slack::Slack::new(c, upstream.clone())),
    }));
    let notifier = crate::notify::Notifier::new(
        config,
        store.clone(),
        upstream_for_notify,
        url.clone(),
        metrics.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(crate::holds::expiry::run(
            store.clone(),
            releaser.clone(),
            stop.clone(),
        )),
        tokio::spawn(reloader.clone().watch(stop.clone())),
        tokio::spawn(observe(store.clone(), metrics, stop.clone())),
        tokio::spawn(serve_review(review_listener, review, stop.clone())),
    ];
    tasks.extend(notifier.spawn(&stop));
    let mut workers = Vec::with_capacity(proxies.len());
    let own: Arc<[SocketAddr]> = std::iter::once(proxy_addr)
        .chain(Some(review_addr))
        .chain(transparent.as_ref().map(|(_, a)| *a))
        .collect();
    for (i, proxy) in proxies.into_iter().enumerate() {
        let bind_err = |source| StartError::Bind {
            addr: proxy_addr,
            source,
        };
        // Every worker accepts on the same listening socket: whichever is
        // free takes the next connection.
        // Built here, so a worker that cannot start stops start-up.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(bind_err)?;
        let listeners = {
            let _in = runtime.enter();
            let mut listeners = vec![(
                TcpListener::from_std(listener.try_clone().map_err(bind_err)?).map_err(bind_err)?,
                Entry::Proxy,
            )];
            if let Some((t, _)) = &transparent {
                listeners.push((
                    TcpListener::from_std(t.try_clone().map_err(bind_err)?).map_err(bind_err)?,
                    Entry::Transparent { own: own.clone() },
                ));
            }
            listeners
        };
        let (limit, stop, finished) = (connections.clone(), stop.clone(), finished.clone());
        let worker = std::thread::Builder::new()
            .name(format!("airlock-proxy-{i}"))
            .spawn(move || serve_worker(runtime, listeners, proxy, limit, stop, finished))
            .map_err(bind_err)?;
        workers.push(worker);
    }
    Ok(Running {
        proxy_addr: Some(proxy_addr),
        review_addr,
        ca: Some(ca),
        store,
        releaser,
        reloader,
        connections,
        max_connections: config.proxy.max_connections,
        grace: config.proxy.shutdown_grace,
        shutdown,
        tasks,
        finish,
        workers,
    })
}

/// `airlock review`: the review server, notifications, expiry, escalation
/// and claim recovery on the shared store, with no proxy. Approved holds
/// decided here are sent from here. The CA's key is never read: only its
/// certificate, for `/ca.pem`, when it is there.
async fn start_review(
    config: &Config,
    store: Store,
    reloader: crate::reload::Reloader,
) -> Result<Running, StartError> {
    if config.store.url.is_none() {
        tracing::warn!(
            "airlock review runs on the embedded store: only useful while no airlock run uses the same directory; a fleet sets [store] url"
        );
    }
    let ca_pem = std::fs::read_to_string(config.tls.ca_dir.join(crate::tls::ca::CERT_FILE))
        .unwrap_or_default();
    store.notify_cursor().await?;
    let upstream = Upstream::new(&config.proxy)?;
    let credentials = Arc::new(
        crate::credentials::Credentials::new(&config.credentials).map_err(StartError::Config)?,
    );
    let releaser = Arc::new(Releaser::new(
        store.clone(),
        upstream.clone(),
        credentials,
        config.proxy.max_body,
        RELEASE_TIMEOUT,
    ));
    let (shutdown, stop) = watch::channel(false);
    let (finish, _) = watch::channel(false);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (review_listener, review_addr) = bind(config.review.listen).await?;
    let url = public_url(config, review_addr);
    let reviewers = reviewers(config, &store, &url).await?;
    for id in store.recover().await? {
        releaser.spawn(id);
    }
    tracing::info!(listen = %review_addr, reviewers = reviewers.len(), "review server listening (no proxy)");
    let review = crate::review::api::router(Arc::new(ReviewState {
        store: store.clone(),
        releaser: releaser.clone(),
        reloader: reloader.clone(),
        reviewers,
        unmatched_reviewers: config.defaults.unmatched_reviewers.clone(),
        ca_pem,
        shutdown: stop.clone(),
        secure_cookies: url.starts_with("https://"),
        metrics: metrics.clone(),
        leaf_stats: crate::review::LeafStats(Arc::new(|| (0, 0))),
        trusted_header: trusted_header(config),
        slack: config
            .slack
            .clone()
            .map(|c| crate::slack::Slack::new(c, upstream.clone())),
    }));
    let notifier =
        crate::notify::Notifier::new(config, store.clone(), upstream, url, metrics.clone());
    let mut tasks = vec![
        tokio::spawn(crate::holds::expiry::run(
            store.clone(),
            releaser.clone(),
            stop.clone(),
        )),
        tokio::spawn(reloader.clone().watch(stop.clone())),
        tokio::spawn(observe(store.clone(), metrics, stop.clone())),
        tokio::spawn(serve_review(review_listener, review, stop.clone())),
    ];
    tasks.extend(notifier.spawn(&stop));
    Ok(Running {
        proxy_addr: None,
        review_addr,
        ca: None,
        store,
        releaser,
        reloader,
        connections: Arc::new(Semaphore::new(1)),
        max_connections: 1,
        grace: config.proxy.shutdown_grace,
        shutdown,
        tasks,
        finish,
        workers: Vec::new(),
    })
}

/// `[review] trusted_header` and its trusted peers, when configured.
fn trusted_header(config: &Config) -> Option<crate::review::auth::TrustedHeader> {
    config
        .review
        .trusted_header
        .clone()
        .map(|header| crate::review::auth::TrustedHeader {
            header,
            proxies: config.review.trusted_proxies.clone(),
        })
}

/// Serves the review API until shutdown begins.
async fn serve_review(
    listener: TcpListener,
    review: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let served = axum::serve(
        listener,
        review.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.changed().await;
    })
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "review server failed");
    }
}

/// `[review] public_url`, or, when it was left to default, the address the
/// review server really bound (`listen = "127.0.0.1:0"` picks a port).
fn public_url(config: &Config, bound: SocketAddr) -> String {
    if config.review.public_url == format!("http://{}", config.review.listen) {
        format!("http://{bound}")
    } else {
        config.review.public_url.clone()
    }
}

/// Feeds hold events to the metrics, off the data path.
async fn observe(
    store: Store,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = store.subscribe();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => metrics.observe(&e, &store).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = stop.changed() => return,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// The configured reviewers; with none, one admin whose token is made on
/// first start, kept only as a hash, and shown once as a login URL.
async fn reviewers(
    config: &Config,
    store: &Store,
    public_url: &str,
) -> Result<Vec<Reviewer>, StartError> {
    if !config.reviewers.is_empty() {
        return Ok(config.reviewers.clone());
    }
    let hash = match store.admin_token_hash().await? {
        Some(hash) => {
            tracing::info!(
                "no [[reviewer]] configured: using the admin token created on first start (its login URL was logged then)"
            );
            hash
        }
        None => {
            let token = crate::holds::random_token();
            let hash = crate::review::auth::token_hash(&token);
            let stored = store.set_admin_token_hash(&hash).await?;
            if stored == hash {
                tracing::warn!(
                    "no [[reviewer]] configured: created an admin token. Log in once at {public_url}/?token={token} (API: Authorization: Bearer {token}). It is stored only as a hash and not shown again."
                );
            } else {
                tracing::info!(
                    "no [[reviewer]] configured: another airlock on this store created the admin token at the same moment; use the login URL it logged"
                );
            }
            stored
        }
    };
    Ok(vec![Reviewer {
        name: "admin".into(),
        token_sha256: Some(hash),
        admin: true,
        notify: None,
        email: None,
        slack_user: None,
    }])
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config, role: Role) -> Result<(), StartError> {
    let running = start_as(&config, system_clock(), role).await?;
    #[cfg(unix)]
    {
        let reloader = running.reloader.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reloader.reload("SIGHUP");
                }
            });
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// How many proxy workers: as configured, or one per CPU.
fn worker_count(config: &Config) -> usize {
    match config.proxy.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    }
}

/// A proxy worker: its own single-threaded runtime, so a connection, the
/// upstream connections it opens and every task it spawns stay on one
/// thread, with no hand-offs between threads on the data path. It accepts
/// until shutdown begins, then keeps serving what is open until told to
/// finish.
fn serve_worker(
    runtime: tokio::runtime::Runtime,
    listeners: Vec<(TcpListener, Entry)>,
    proxy: Arc<Proxy>,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    mut finished: watch::Receiver<bool>,
) {
    runtime.block_on(async move {
        futures_util::future::join_all(listeners.into_iter().map(|(listener, entry)| {
            accept_loop(listener, entry, proxy.clone(), limit.clone(), stop.clone())
        }))
        .await;
        // Accepting has stopped; serve what is open until told to finish.
        let _ = finished.wait_for(|f| *f).await;
    });
    // A DNS lookup stuck on a dead resolver must not hold up the exit.
    runtime.shutdown_timeout(WORKER_EXIT);
}

/// How agents come in on a listener.
#[derive(Clone)]
enum Entry {
    /// `[proxy] listen`: agents that use airlock as their proxy.
    Proxy,
    /// `[proxy] transparent_listen`: connections the packet filter
    /// redirected; `own` are airlock's listeners, which a redirect must
    /// never lead back to.
    Transparent { own: Arc<[SocketAddr]> },
}

async fn accept_loop(
    listener: TcpListener,
    entry: Entry,
    proxy: Arc<Proxy>,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Take a slot before accepting, so a full house leaves new
        // connections in the backlog instead of accepting and stalling them.
        let permit = tokio::select! {
            _ = stop.changed() => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let proxy = proxy.clone();
                // The slot lives as long as any part of the connection.
                let slot = Arc::new(permit);
                match &entry {
                    Entry::Proxy => {
                        tokio::spawn(proxy.serve(stream, peer, slot));
                    }
                    Entry::Transparent { own } => {
                        tokio::spawn(crate::proxy::transparent::serve(
                            proxy,
                            stream,
                            peer,
                            slot,
                            own.clone(),
                        ));
                    }
                }
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
