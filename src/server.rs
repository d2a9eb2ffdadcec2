//! Start-up and the accept loop: load rules and the CA, bind the proxy
//! listener, serve each agent connection on its own task under a connection
//! limit, and stop on a signal.
//!
//! Nothing here interprets requests; a failure to start is returned with the
//! exit code it deserves (2 for bad configuration, 1 for the environment).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::proxy::Proxy;
use crate::rules::{RuleError, RuleSet};
use crate::tls::{Ca, LeafCache, TlsError};
use crate::upstream::Upstream;

/// How many hosts' leaf certificates stay minted.
const LEAF_CACHE_HOSTS: usize = 1024;
/// Agent connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 10_000;

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
}

impl StartError {
    /// 2 for what the operator must fix in configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Rules(_) | StartError::Tls(_) => 2,
            StartError::Bind { .. } => 1,
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
    let rules = crate::rules::load_dir(&config.rules.dir)?;
    RuleSet::new(rules, config.defaults.unmatched)
}

/// A started airlock: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where agents connect (the real port when `listen` asked for 0).
    pub proxy_addr: SocketAddr,
    /// The CA whose leaves intercepted agents see.
    pub ca: Arc<Ca>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Running {
    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
    }
}

/// Loads everything, binds the listener and starts serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let rules = Arc::new(load_rules(config).map_err(StartError::Rules)?);
    let (ca, created) = Ca::load_or_create(&config.tls.ca_dir)?;
    if created {
        tracing::info!(dir = %config.tls.ca_dir.display(), "created a new airlock CA; agents must trust {}", config.tls.ca_dir.join(crate::tls::ca::CERT_FILE).display());
    }
    let ca = Arc::new(ca);
    let proxy = Arc::new(Proxy {
        rules: rules.clone(),
        upstream: Upstream::new(&config.proxy)?,
        leaves: LeafCache::new(ca.clone(), LEAF_CACHE_HOSTS)?,
        max_body: config.proxy.max_body,
    });
    let listener = TcpListener::bind(config.proxy.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.proxy.listen,
            source,
        })?;
    let proxy_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.proxy.listen,
        source,
    })?;
    tracing::info!(listen = %proxy_addr, rules = rules.rules().len(), unmatched = %rules.unmatched(), "airlock proxy listening");
    let (shutdown, stop) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, proxy, stop));
    Ok(Running {
        proxy_addr,
        ca,
        shutdown,
        accept,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let running = start(&config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
                tokio::spawn(async move {
                    proxy.serve(stream, peer).await;
                    drop(permit);
                });
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
