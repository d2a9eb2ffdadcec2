//! Configuration: `airlock.toml` as SPEC describes it, embedded defaults, and
//! `AIRLOCK_<SECTION>_<KEY>` environment overrides.
//!
//! Raw serde structs (`deny_unknown_fields`, values kept `Spanned`) are read
//! first, then every setting is validated where it came from, so an error can
//! name the file, line, column and key, or the environment variable. All errors
//! are collected, not just the first. This module never reads the process
//! environment itself (callers hand in an [`Env`]) and never opens sockets or
//! files other than the configuration file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use toml::Spanned;

use crate::rules::{Action, Location};
use crate::window::{Window, WorkingClock, parse_duration};

/// The prefix of every environment override.
const ENV_PREFIX: &str = "AIRLOCK_";

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; `None` for embedded defaults.
    pub source: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub review: ReviewConfig,
    pub store: StoreConfig,
    pub tls: TlsConfig,
    pub rules: RulesConfig,
    pub defaults: Defaults,
    /// `[business_hours]`: what a business day (`1bd`) means.
    pub business_hours: WorkingClock,
    pub reviewers: Vec<Reviewer>,
    /// `[[agent]]`: with any, every agent authenticates to the proxy.
    pub agents: Vec<Agent>,
    pub notify: Vec<NotifySink>,
    pub credentials: Vec<CredentialConfig>,
    pub slack: Option<SlackConfig>,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Where the pod's packet filter redirects agents' connections, when
    /// set: each is handled like a CONNECT to its TLS server name (or
    /// `Host`) on its original port.
    pub transparent_listen: Option<SocketAddr>,
    /// Largest body airlock will buffer to inspect or hold; larger gets 413.
    pub max_body: u64,
    /// Extra PEM root files trusted for upstream TLS, beside the system roots.
    pub upstream_ca: Vec<PathBuf>,
    /// Static name → address overrides for upstream connections (like
    /// /etc/hosts): split-horizon setups, local fakes of real APIs, tests.
    pub hosts: BTreeMap<String, IpAddr>,
    /// How long an upstream TCP connect may take.
    pub connect_timeout: Duration,
    /// At shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Agent connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long an agent may take to send a request head (slowloris).
    pub header_timeout: Duration,
    /// How long an upstream may take to answer with a response head.
    pub response_timeout: Duration,
    /// Proxy worker threads, each serving its own connections start to end;
    /// 0 means one per CPU.
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    /// A header an authenticating proxy in front sets to the signed-in
    /// person's identity (`X-Forwarded-Email`), believed only from
    /// `trusted_proxies`.
    pub trusted_header: Option<http::HeaderName>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The sled directory, when there is no `url`.
    pub path: PathBuf,
    /// A PostgreSQL URL: the fleet's shared store instead of `path`. From
    /// `url`, or the file `url_file` names; never printed.
    pub url: Option<Secret>,
    /// Extra PEM roots trusted for the database's TLS.
    pub ca: Vec<PathBuf>,
}

/// A setting that may carry a password: shown as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub unmatched: Action,
    pub window: Window,
    pub held_status: StatusCode,
    /// Pending holds one agent identity may have at once; past it a
    /// reviewed request gets 429 and nothing is stored. At least 1.
    pub max_pending_per_agent: u64,
    /// Reviewers (besides admins) who may decide holds no rule matched.
    pub unmatched_reviewers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Reviewer {
    pub name: String,
    /// The SHA-256 of the reviewer's bearer token; `None` for a reviewer
    /// who only signs in through `[review] trusted_header`.
    pub token_sha256: Option<[u8; 32]>,
    pub admin: bool,
    pub notify: Option<String>,
    /// The identity `[review] trusted_header` carries for this reviewer,
    /// lower-cased.
    pub email: Option<String>,
    /// Who this reviewer is in Slack (`U0123ABCD`), for clicks on buttons.
    pub slack_user: Option<String>,
}

/// An agent allowed through the proxy: `Proxy-Authorization: Basic
/// base64(name:token)`, the token stored only as its SHA-256.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub token_sha256: [u8; 32],
}

/// `[[credential]]`: a header airlock sets on requests to some hosts from
/// a secret the agent never holds.
#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub name: String,
    /// Host globs, as in rules.
    pub hosts: Vec<String>,
    pub header: http::HeaderName,
    /// The header's value: `{secret}` (or `{secret_base64}`) stands for
    /// the secret.
    pub value: String,
    pub source: SecretSource,
}

/// Where a secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, read whole less one trailing newline, again when it changes.
    File(PathBuf),
    /// An environment variable of the airlock process.
    Env(String),
}

/// A secret file's contents: the whole file less one trailing newline
/// (`\n` or `\r\n`), as every secret file airlock reads is taken.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// SHA-256 of a token, as `token_sha256` stores it.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Compares two token hashes in constant time.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// Two texts compared in time that depends on their lengths only.
pub fn same_text(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `[slack]`: the Slack app that posts holds with buttons and takes clicks.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub bot_token: Secret,
    pub signing_secret: Secret,
    /// Where a hold's message goes unless its rule names `slack_channel`.
    pub channel: Option<String>,
    /// The Web API's base URL (tests point it elsewhere).
    pub api_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    Json,
    Slack,
}

#[derive(Debug, Clone)]
pub struct NotifySink {
    /// What logs and `/metrics` call this sink: its `name`, or `notify-N`
    /// (never the URL, which for Slack is itself the secret).
    pub name: String,
    pub url: String,
    pub format: NotifyFormat,
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub retry: RetryPolicy,
}

/// How a webhook delivery is retried: `backoff`, doubling after each failed
/// attempt up to ten minutes, for at most `max_attempts` attempts, each
/// given `timeout` to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 12,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The notification events a sink may subscribe to.
pub const NOTIFY_EVENTS: &[&str] = &[
    "held",
    "escalated",
    "decided",
    "expired",
    "released",
    "failed",
];

/// The environment as seen by the configuration: a snapshot, so tests can
/// hand in their own instead of mutating the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    /// The `AIRLOCK_*` variables of this process.
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a bad setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(Location),
    Env(String),
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    /// `[section] key`, or empty when the error is not about one key.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File(loc) => write!(f, "{loc}: ")?,
            Origin::Env(var) => write!(f, "environment variable {var}: ")?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the errors found in one configuration, one per line when printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---- raw file structure -------------------------------------------------

type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    review: RawReview,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    business_hours: RawBusinessHours,
    #[serde(default)]
    reviewer: Vec<Spanned<RawReviewer>>,
    #[serde(default)]
    agent: Vec<Spanned<RawAgent>>,
    #[serde(default)]
    notify: Vec<Spanned<RawNotify>>,
    #[serde(default)]
    credential: Vec<Spanned<RawCredential>>,
    slack: Option<Spanned<RawSlack>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token_file: Option<String>,
    bot_token_env: Option<String>,
    signing_secret_file: Option<String>,
    signing_secret_env: Option<String>,
    channel: Option<String>,
    api_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: Spanned<String>,
    host: Spanned<Vec<String>>,
    header: Spanned<String>,
    value: Spanned<String>,
    secret_file: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: S<String>,
    transparent_listen: S<String>,
    max_body: S<String>,
    upstream_ca: S<Vec<String>>,
    hosts: S<BTreeMap<String, String>>,
    connect_timeout: S<String>,
    shutdown_grace: S<String>,
    max_connections: S<u16>,
    workers: S<u16>,
    header_timeout: S<String>,
    response_timeout: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReview {
    listen: S<String>,
    public_url: S<String>,
    trusted_header: S<String>,
    trusted_proxies: S<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: S<String>,
    url: S<String>,
    url_file: S<String>,
    ca: S<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_dir: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    unmatched: S<String>,
    window: S<String>,
    held_status: S<u16>,
    max_pending_per_agent: S<u16>,
    unmatched_reviewers: S<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBusinessHours {
    timezone: S<String>,
    days: S<Vec<String>>,
    start: S<String>,
    end: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReviewer {
    name: Spanned<String>,
    token_sha256: S<String>,
    #[serde(default)]
    admin: bool,
    notify: S<String>,
    email: S<String>,
    slack_user: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Spanned<String>,
    token_sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    name: S<String>,
    url: Spanned<String>,
    format: S<String>,
    events: S<Vec<String>>,
    secret: S<String>,
    max_attempts: S<u32>,
    backoff: S<String>,
    timeout: S<String>,
}

/// A value type an environment variable can carry.
trait FromEnv: Sized {
    fn from_env(text: &str) -> Result<Self, String>;
}

impl FromEnv for String {
    fn from_env(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FromEnv for u16 {
    fn from_env(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("expected a whole number, got {text:?}"))
    }
}

/// Validates settings one by one, remembering where each came from.
struct Builder<'a> {
    file: &'a str,
    text: &'a str,
    env: &'a Env,
    /// Every `AIRLOCK_<SECTION>_<KEY>` name that is a real setting.
    known_env: Vec<String>,
    errors: Vec<ConfigError>,
}

impl Builder<'_> {
    fn location(&self, span: std::ops::Range<usize>) -> Location {
        Location::at(self.file, self.text, span.start)
    }

    /// An error about the file as a whole rather than one value in it.
    fn whole_file_error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: Origin::File(Location {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
            }),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn file_error(&mut self, span: std::ops::Range<usize>, key: String, message: String) {
        let origin = Origin::File(self.location(span));
        self.errors.push(ConfigError {
            origin,
            key,
            message,
        });
    }

    /// One scalar setting of a single section: the environment wins over
    /// the file, the file over the default. A bad value is recorded and the
    /// default returned so that every error is reported in one go.
    fn scalar<R: FromEnv, T>(
        &mut self,
        section: &str,
        key: &str,
        raw: S<R>,
        default: T,
        parse: impl Fn(R) -> Result<T, String>,
    ) -> T {
        let var = format!("{ENV_PREFIX}{}_{}", section, key).to_ascii_uppercase();
        let key_path = format!("[{section}] {key}");
        let from_env = self.env.get(&var).map(str::to_owned);
        self.known_env.push(var.clone());
        if let Some(text) = from_env {
            return match R::from_env(&text).and_then(&parse) {
                Ok(v) => v,
                Err(message) => {
                    self.errors.push(ConfigError {
                        origin: Origin::Env(var),
                        key: key_path,
                        message,
                    });
                    default
                }
            };
        }
        match raw {
            None => default,
            Some(spanned) => {
                let span = spanned.span();
                match parse(spanned.into_inner()) {
                    Ok(v) => v,
                    Err(message) => {
                        self.file_error(span, key_path, message);
                        default
                    }
                }
            }
        }
    }

    /// A list setting: file only (the environment carries scalars).
    fn list<T>(
        &mut self,
        section: &str,
        key: &str,
        raw: S<Vec<String>>,
        default: Vec<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(spanned) = raw else { return default };
        let span = spanned.span();
        let mut out = Vec::new();
        for item in spanned.into_inner() {
            match parse(&item) {
                Ok(v) => out.push(v),
                Err(message) => {
                    self.file_error(span.clone(), format!("[{section}] {key}"), message);
                }
            }
        }
        out
    }
}

impl Config {
    /// The embedded defaults with environment overrides applied.
    pub fn defaults(env: &Env) -> Result<Config, ConfigErrors> {
        Config::parse("<embedded defaults>", "", env)
    }

    /// Reads `path` (or, when `None`, `AIRLOCK_CONFIG`, or else the embedded
    /// defaults) and applies environment overrides.
    pub fn load(path: Option<&Path>, env: &Env) -> Result<Config, ConfigErrors> {
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| env.get("AIRLOCK_CONFIG").map(PathBuf::from));
        let Some(path) = path else {
            return Config::defaults(env);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: Origin::File(Location {
                    file: shown.clone(),
                    line: 0,
                    column: 0,
                }),
                key: String::new(),
                message: format!("cannot read configuration: {e}"),
            }])
        })?;
        let mut config = Config::parse(&shown, &text, env)?;
        config.source = Some(path);
        Ok(config)
    }

    /// Parses configuration text; `file` is the name errors print.
    pub fn parse(file: &str, text: &str, env: &Env) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                return Err(ConfigErrors(vec![ConfigError {
                    origin: Origin::File(Location::at(file, text, span.start)),
                    key: enclosing_section(text, span.start),
                    message: e.message().trim().to_owned(),
                }]));
            }
        };
        let mut b = Builder {
            file,
            text,
            env,
            known_env: vec!["AIRLOCK_CONFIG".to_owned()],
            errors: Vec::new(),
        };
        let config = build(&mut b, raw);
        check_unknown_env(&mut b);
        if b.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(b.errors))
        }
    }
}

fn build(b: &mut Builder<'_>, raw: RawConfig) -> Config {
    let p = raw.proxy;
    let proxy = ProxyConfig {
        listen: b.scalar(
            "proxy",
            "listen",
            p.listen,
            SocketAddr::from(([127, 0, 0, 1], 3128)),
            parse_addr,
        ),
        transparent_listen: b.scalar(
            "proxy",
            "transparent_listen",
            p.transparent_listen,
            None,
            |s: String| parse_addr(s).map(Some),
        ),
        max_body: b.scalar(
            "proxy",
            "max_body",
            p.max_body,
            10 * 1024 * 1024,
            |s: String| parse_size(&s),
        ),
        upstream_ca: b.list("proxy", "upstream_ca", p.upstream_ca, Vec::new(), |s| {
            Ok(PathBuf::from(s))
        }),
        hosts: {
            let mut hosts = BTreeMap::new();
            if let Some(spanned) = p.hosts {
                let span = spanned.span();
                for (name, ip) in spanned.into_inner() {
                    match ip.parse::<IpAddr>() {
                        Ok(ip) => {
                            hosts.insert(name.to_ascii_lowercase(), ip);
                        }
                        Err(_) => b.file_error(
                            span.clone(),
                            "[proxy] hosts".into(),
                            format!("{name:?}: {ip:?} is not an IP address"),
                        ),
                    }
                }
            }
            hosts
        },
        connect_timeout: b.scalar(
            "proxy",
            "connect_timeout",
            p.connect_timeout,
            Duration::from_secs(10),
            |s: String| parse_duration(&s),
        ),
        shutdown_grace: b.scalar(
            "proxy",
            "shutdown_grace",
            p.shutdown_grace,
            Duration::from_secs(20),
            |s: String| parse_duration(&s),
        ),
        max_connections: b.scalar(
            "proxy",
            "max_connections",
            p.max_connections,
            10_000,
            |n: u16| {
                if n == 0 {
                    Err("at least one connection must be allowed".into())
                } else {
                    Ok(usize::from(n))
                }
            },
        ),
        header_timeout: b.scalar(
            "proxy",
            "header_timeout",
            p.header_timeout,
            Duration::from_secs(10),
            |s: String| parse_duration(&s),
        ),
        response_timeout: b.scalar(
            "proxy",
            "response_timeout",
            p.response_timeout,
            Duration::from_secs(60),
            |s: String| parse_duration(&s),
        ),
        workers: b.scalar("proxy", "workers", p.workers, 0, |n: u16| {
            Ok(usize::from(n))
        }),
    };
    let r = raw.review;
    let review_listen = b.scalar(
        "review",
        "listen",
        r.listen,
        SocketAddr::from(([127, 0, 0, 1], 3129)),
        parse_addr,
    );
    let review = ReviewConfig {
        listen: review_listen,
        public_url: b.scalar(
            "review",
            "public_url",
            r.public_url,
            format!("http://{review_listen}"),
            |s: String| {
                if s.starts_with("http://") || s.starts_with("https://") {
                    Ok(s.trim_end_matches('/').to_owned())
                } else {
                    Err(format!("{s:?} must start with http:// or https://"))
                }
            },
        ),
        trusted_header: b.scalar(
            "review",
            "trusted_header",
            r.trusted_header,
            None,
            |s: String| {
                http::HeaderName::from_bytes(s.trim().as_bytes())
                    .map(Some)
                    .map_err(|_| format!("{s:?} is not a header name"))
            },
        ),
        trusted_proxies: b.list(
            "review",
            "trusted_proxies",
            r.trusted_proxies,
            Vec::new(),
            |s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{s:?} is not an IP address or network (10.0.0.0/8)"))
            },
        ),
    };
    if review.trusted_header.is_some() && review.trusted_proxies.is_empty() {
        b.whole_file_error(
            "[review] trusted_proxies",
            "trusted_header needs trusted_proxies: a header anyone may send proves nothing",
        );
    }
    let url = b.scalar("store", "url", raw.store.url, None, |s: String| {
        store_url(s.trim()).map(Some)
    });
    let url_file = b.scalar(
        "store",
        "url_file",
        raw.store.url_file,
        None,
        |path: String| {
            let text = read_secret_file(Path::new(&path))
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            store_url(&text)
                .map(Some)
                .map_err(|e| format!("{path}: {e}"))
        },
    );
    if url.is_some() && url_file.is_some() {
        b.whole_file_error("[store] url", "set url or url_file, not both");
    }
    let store = StoreConfig {
        path: b.scalar(
            "store",
            "path",
            raw.store.path,
            PathBuf::from("./airlock-data"),
            non_empty_path,
        ),
        url: url.or(url_file),
        ca: b.list("store", "ca", raw.store.ca, Vec::new(), |s| {
            Ok(PathBuf::from(s))
        }),
    };
    let tls = TlsConfig {
        ca_dir: b.scalar(
            "tls",
            "ca_dir",
            raw.tls.ca_dir,
            PathBuf::from("./certs"),
            non_empty_path,
        ),
    };
    let rules = RulesConfig {
        dir: b.scalar(
            "rules",
            "dir",
            raw.rules.dir,
            PathBuf::from(crate::rules::shipped::DEFAULT_DIR),
            non_empty_path,
        ),
    };
    let d = raw.defaults;
    let defaults = Defaults {
        unmatched: b.scalar(
            "defaults",
            "unmatched",
            d.unmatched,
            Action::Review,
            |s: String| {
                Action::parse(&s)
                    .ok_or_else(|| format!("{s:?} is not an action: use automatic, review or deny"))
            },
        ),
        window: b.scalar(
            "defaults",
            "window",
            d.window,
            Window::Fixed(Duration::from_secs(4 * 3600)),
            |s: String| Window::parse(&s),
        ),
        held_status: b.scalar(
            "defaults",
            "held_status",
            d.held_status,
            StatusCode::FORBIDDEN,
            |n: u16| match StatusCode::from_u16(n) {
                Ok(code) if (200..=599).contains(&n) => Ok(code),
                _ => Err(format!("{n} is not an HTTP status from 200 to 599")),
            },
        ),
        max_pending_per_agent: b.scalar(
            "defaults",
            "max_pending_per_agent",
            d.max_pending_per_agent,
            20,
            |n: u16| {
                if n == 0 {
                    Err("at least 1: an agent must be able to have one request held".into())
                } else {
                    Ok(u64::from(n))
                }
            },
        ),
        unmatched_reviewers: Vec::new(),
    };
    let h = raw.business_hours;
    let start = b.scalar("business_hours", "start", h.start, 9 * 60, |s: String| {
        parse_clock(&s)
    });
    let end = b.scalar("business_hours", "end", h.end, 17 * 60, |s: String| {
        parse_clock(&s)
    });
    if start >= end {
        b.whole_file_error("[business_hours]", "start must be before end");
    }
    let tz = b.scalar(
        "business_hours",
        "timezone",
        h.timezone,
        jiff::tz::TimeZone::UTC,
        |s: String| {
            jiff::tz::TimeZone::get(&s).map_err(|_| {
                format!("{s:?} is not an IANA time-zone name such as \"Europe/Paris\"")
            })
        },
    );
    let day_list = b.list(
        "business_hours",
        "days",
        h.days,
        vec![0, 1, 2, 3, 4],
        parse_weekday,
    );
    let mut days = [false; 7];
    for d in day_list {
        days[usize::from(d)] = true;
    }
    if !days.iter().any(|d| *d) {
        b.whole_file_error(
            "[business_hours] days",
            "at least one working day is needed",
        );
    }
    let business_hours = WorkingClock {
        tz,
        days,
        start,
        end,
    };
    let reviewers = raw
        .reviewer
        .into_iter()
        .filter_map(|r| build_reviewer(b, r))
        .collect::<Vec<_>>();
    let mut seen: Vec<&str> = Vec::new();
    let mut dupes = Vec::new();
    for r in &reviewers {
        if seen.contains(&r.name.as_str()) {
            dupes.push(r.name.clone());
        }
        seen.push(&r.name);
    }
    for name in dupes {
        b.whole_file_error(
            "[[reviewer]] name",
            format!("reviewer {name:?} is listed twice"),
        );
    }
    let mut defaults = defaults;
    defaults.unmatched_reviewers = known_reviewers(
        b,
        &reviewers,
        "[defaults] unmatched_reviewers",
        d.unmatched_reviewers,
    );
    let mut agents: Vec<Agent> = Vec::new();
    for raw in raw.agent {
        if let Some(agent) = build_agent(b, raw, &agents) {
            agents.push(agent);
        }
    }
    let slack = raw.slack.and_then(|s| build_slack(b, s));
    let mut credentials: Vec<CredentialConfig> = Vec::new();
    for raw in raw.credential {
        if let Some(c) = build_credential(b, raw, &credentials) {
            credentials.push(c);
        }
    }
    let notify: Vec<NotifySink> = raw
        .notify
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| build_notify(b, i + 1, n))
        .collect();
    // Names label metrics and log lines: two sinks must not share one.
    for (i, sink) in notify.iter().enumerate() {
        if notify[..i].iter().any(|o| o.name == sink.name) {
            b.whole_file_error(
                "[[notify]] name",
                format!("sink name {:?} is used twice", sink.name),
            );
        }
    }
    Config {
        source: None,
        proxy,
        review,
        store,
        tls,
        rules,
        defaults,
        business_hours,
        reviewers,
        agents,
        notify,
        credentials,
        slack,
    }
}

/// A secret from a file (read whole, less one trailing newline) or an
/// environment variable of this process; the error never holds the value.
fn secret_from(file: Option<&str>, env: Option<&str>, what: &str) -> Result<Secret, String> {
    let value = match (file, env) {
        (Some(path), None) => read_secret_file(Path::new(path))
            .map_err(|e| format!("{what}: cannot read {path}: {e}"))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| format!("{what}: {var} is not set in the environment"))?,
        _ => return Err(format!("set exactly one of {what}_file and {what}_env")),
    };
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Secret::new(value))
}

fn build_slack(b: &mut Builder<'_>, raw: Spanned<RawSlack>) -> Option<SlackConfig> {
    let span = raw.span();
    let raw = raw.into_inner();
    let bot_token = secret_from(
        raw.bot_token_file.as_deref(),
        raw.bot_token_env.as_deref(),
        "bot_token",
    );
    let signing_secret = secret_from(
        raw.signing_secret_file.as_deref(),
        raw.signing_secret_env.as_deref(),
        "signing_secret",
    );
    let api_url = match raw.api_url {
        Some(url) => match parse_url(url) {
            Ok(u) => u.trim_end_matches('/').to_owned(),
            Err(e) => {
                b.file_error(span, "[slack] api_url".into(), e);
                return None;
            }
        },
        None => "https://slack.com/api".to_owned(),
    };
    match (bot_token, signing_secret) {
        (Ok(bot_token), Ok(signing_secret)) => Some(SlackConfig {
            bot_token,
            signing_secret,
            channel: raw.channel.filter(|c| !c.is_empty()),
            api_url,
        }),
        (Err(e), _) | (_, Err(e)) => {
            b.file_error(span, "[slack]".into(), e);
            None
        }
    }
}

/// A list of reviewer names, each of which must be a configured `[[reviewer]]`.
fn known_reviewers(
    b: &mut Builder<'_>,
    reviewers: &[Reviewer],
    key: &str,
    raw: S<Vec<String>>,
) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    let span = raw.span();
    let mut out = Vec::new();
    for name in raw.into_inner() {
        if reviewers.iter().any(|r| r.name == name) {
            out.push(name);
        } else {
            b.file_error(
                span.clone(),
                key.to_owned(),
                format!("{name:?} is not a configured [[reviewer]] name"),
            );
        }
    }
    out
}

fn build_credential(
    b: &mut Builder<'_>,
    raw: Spanned<RawCredential>,
    before: &[CredentialConfig],
) -> Option<CredentialConfig> {
    let whole = raw.span();
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    let mut fail = |span: std::ops::Range<usize>, key: &str, message: String| {
        b.file_error(span, format!("[[credential]] {key}"), message);
        None::<CredentialConfig>
    };
    if name.is_empty() || before.iter().any(|c| c.name == name) {
        return fail(
            name_span,
            "name",
            format!("{name:?}: each credential needs a name of its own"),
        );
    }
    let host_span = raw.host.span();
    let hosts = raw.host.into_inner();
    if hosts.is_empty() {
        return fail(
            host_span,
            "host",
            format!("credential {name:?} names no host"),
        );
    }
    for h in &hosts {
        if let Err(e) = crate::rules::host_glob(h) {
            return fail(
                host_span,
                "host",
                format!("credential {name:?}: {h:?}: {e}"),
            );
        }
    }
    let header_span = raw.header.span();
    let Ok(header) = http::HeaderName::from_bytes(raw.header.get_ref().as_bytes()) else {
        return fail(
            header_span,
            "header",
            format!(
                "credential {name:?}: {:?} is not a header name",
                raw.header.get_ref()
            ),
        );
    };
    if matches!(
        header.as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection"
    ) {
        return fail(
            header_span,
            "header",
            format!("credential {name:?}: airlock does not set {header} from a secret"),
        );
    }
    let value_span = raw.value.span();
    let value = raw.value.into_inner();
    if !value.contains("{secret}") && !value.contains("{secret_base64}") {
        return fail(
            value_span,
            "value",
            format!("credential {name:?}: the value must contain {{secret}} or {{secret_base64}}"),
        );
    }
    if http::HeaderValue::from_str(&value.replace("{secret_base64}", "").replace("{secret}", ""))
        .is_err()
    {
        return fail(
            value_span,
            "value",
            format!("credential {name:?}: the value is not a valid header value"),
        );
    }
    let source = match (raw.secret_file, raw.secret_env) {
        (Some(f), None) if !f.get_ref().is_empty() => {
            SecretSource::File(PathBuf::from(f.into_inner()))
        }
        (None, Some(e)) if !e.get_ref().is_empty() => SecretSource::Env(e.into_inner()),
        _ => {
            return fail(
                whole,
                "secret_file",
                format!("credential {name:?} needs exactly one of secret_file and secret_env"),
            );
        }
    };
    Some(CredentialConfig {
        name,
        hosts,
        header,
        value,
        source,
    })
}

fn build_agent(b: &mut Builder<'_>, raw: Spanned<RawAgent>, before: &[Agent]) -> Option<Agent> {
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if name.is_empty() || name.contains(|c: char| c == ':' || c.is_control()) {
        b.file_error(
            name_span,
            "[[agent]] name".into(),
            format!("{name:?}: an agent name needs at least one character and no colon or control characters (it is the user name of Proxy-Authorization: Basic)"),
        );
        return None;
    }
    if before.iter().any(|a| a.name == name) {
        b.file_error(
            name_span,
            "[[agent]] name".into(),
            format!("agent {name:?} is listed twice"),
        );
        return None;
    }
    let Some(token_sha256) = parse_sha256_hex(raw.token_sha256.get_ref()) else {
        b.file_error(
            raw.token_sha256.span(),
            "[[agent]] token_sha256".into(),
            format!(
                "agent {name:?}: expected 64 hexadecimal characters (the SHA-256 of the token)"
            ),
        );
        return None;
    };
    Some(Agent { name, token_sha256 })
}

fn build_reviewer(b: &mut Builder<'_>, raw: Spanned<RawReviewer>) -> Option<Reviewer> {
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if name.is_empty() {
        b.file_error(
            name_span,
            "[[reviewer]] name".into(),
            "a reviewer needs a name".into(),
        );
        return None;
    }
    let email = raw
        .email
        .map(|e| e.into_inner().trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty());
    let token_sha256 = match raw.token_sha256 {
        Some(token) => {
            let Some(hash) = parse_sha256_hex(token.get_ref()) else {
                b.file_error(
                    token.span(),
                    "[[reviewer]] token_sha256".into(),
                    format!(
                        "reviewer {name:?}: expected 64 hexadecimal characters (the SHA-256 of the token)"
                    ),
                );
                return None;
            };
            Some(hash)
        }
        None if email.is_some() => None,
        None => {
            b.file_error(
                name_span,
                "[[reviewer]] token_sha256".into(),
                format!(
                    "reviewer {name:?} needs a token_sha256, or an email to sign in with through [review] trusted_header"
                ),
            );
            return None;
        }
    };
    let notify = match raw.notify {
        Some(url) => {
            let span = url.span();
            match parse_url(url.into_inner()) {
                Ok(u) => Some(u),
                Err(message) => {
                    b.file_error(span, "[[reviewer]] notify".into(), message);
                    None
                }
            }
        }
        None => None,
    };
    Some(Reviewer {
        name,
        token_sha256,
        admin: raw.admin,
        notify,
        email,
        slack_user: raw
            .slack_user
            .map(Spanned::into_inner)
            .filter(|u| !u.is_empty()),
    })
}

/// One value of an array table, which environment variables do not reach.
fn table_value<R, T>(
    b: &mut Builder<'_>,
    key: &str,
    raw: S<R>,
    default: T,
    parse: impl Fn(R) -> Result<T, String>,
) -> T {
    let Some(raw) = raw else { return default };
    let span = raw.span();
    match parse(raw.into_inner()) {
        Ok(v) => v,
        Err(message) => {
            b.file_error(span, key.to_owned(), message);
            default
        }
    }
}

fn build_notify(b: &mut Builder<'_>, n: usize, raw: Spanned<RawNotify>) -> Option<NotifySink> {
    let raw = raw.into_inner();
    let defaults = RetryPolicy::default();
    let name = table_value(b, "[[notify]] name", raw.name, format!("notify-{n}"), |s| {
        if s.is_empty() || s.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
            Err("a sink name needs at least one character and no quotes, backslashes or control characters".into())
        } else {
            Ok(s)
        }
    });
    let retry = RetryPolicy {
        max_attempts: table_value(
            b,
            "[[notify]] max_attempts",
            raw.max_attempts,
            defaults.max_attempts,
            |n| {
                if n == 0 {
                    Err("max_attempts must be at least 1".into())
                } else {
                    Ok(n)
                }
            },
        ),
        backoff: table_value(
            b,
            "[[notify]] backoff",
            raw.backoff,
            defaults.backoff,
            |s| parse_duration(&s),
        ),
        timeout: table_value(
            b,
            "[[notify]] timeout",
            raw.timeout,
            defaults.timeout,
            |s| parse_duration(&s),
        ),
    };
    let url_span = raw.url.span();
    let url = match parse_url(raw.url.into_inner()) {
        Ok(u) => u,
        Err(message) => {
            b.file_error(url_span, "[[notify]] url".into(), message);
            return None;
        }
    };
    let format = match raw.format {
        None => NotifyFormat::Json,
        Some(f) => match f.get_ref().as_str() {
            "json" => NotifyFormat::Json,
            "slack" => NotifyFormat::Slack,
            other => {
                b.file_error(
                    f.span(),
                    "[[notify]] format".into(),
                    format!("{other:?} is not a format: use json or slack"),
                );
                return None;
            }
        },
    };
    let events = b.list(
        "notify",
        "events",
        raw.events,
        NOTIFY_EVENTS.iter().map(|s| (*s).to_owned()).collect(),
        |e| {
            if NOTIFY_EVENTS.contains(&e) {
                Ok(e.to_owned())
            } else {
                Err(format!(
                    "{e:?} is not an event: use {}",
                    NOTIFY_EVENTS.join(", ")
                ))
            }
        },
    );
    Some(NotifySink {
        name,
        url,
        format,
        events,
        secret: raw.secret.map(Spanned::into_inner),
        retry,
    })
}

/// An `AIRLOCK_<SECTION>_*` variable for a known section that names no
/// setting is a typo: refuse it rather than run with the default. Variables
/// for unknown sections are left alone, since Kubernetes injects
/// `AIRLOCK_SERVICE_HOST` and the like for a Service named `airlock`.
fn check_unknown_env(b: &mut Builder<'_>) {
    const SECTIONS: &[&str] = &[
        "PROXY",
        "REVIEW",
        "STORE",
        "TLS",
        "RULES",
        "DEFAULTS",
        "BUSINESS_HOURS",
    ];
    for (name, _) in &b.env.vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if b.known_env.iter().any(|k| k == name) {
            continue;
        }
        // BUSINESS_HOURS must be tried before a shorter section could claim it.
        let section = SECTIONS
            .iter()
            .filter(|s| rest.starts_with(&format!("{s}_")))
            .max_by_key(|s| s.len());
        if let Some(section) = section {
            let mut names: Vec<&str> = b
                .known_env
                .iter()
                .filter(|k| k.starts_with(&format!("{ENV_PREFIX}{section}_")))
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            b.errors.push(ConfigError {
                origin: Origin::Env(name.clone()),
                key: String::new(),
                message: format!(
                    "no such setting; the [{}] overrides are {}",
                    section.to_ascii_lowercase(),
                    names.join(", ")
                ),
            });
        }
    }
}

// ---- value parsers --------------------------------------------------------

fn parse_addr(s: String) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address:port such as \"127.0.0.1:3128\""))
}

/// A PostgreSQL URL; the message never repeats it, since it may carry a
/// password.
fn store_url(s: &str) -> Result<Secret, String> {
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err("must be a PostgreSQL URL, postgres://user:password@host:port/database".into());
    }
    s.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
    Ok(Secret::new(s))
}

fn non_empty_path(s: String) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("a path is needed".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn parse_url(s: String) -> Result<String, String> {
    if (s.starts_with("http://") || s.starts_with("https://")) && s.parse::<http::Uri>().is_ok() {
        Ok(s)
    } else {
        Err(format!("{s:?} is not an http:// or https:// URL"))
    }
}

/// `10MiB`, `512KiB`, `1MB`, `4096` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as \"10MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1000 * 1000,
        "MiB" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `HH:MM` → minutes after midnight; `24:00` is allowed as an end.
fn parse_clock(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time of day such as \"09:00\"");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_weekday(s: &str) -> Result<u8, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let lower = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower == *d || (lower.len() > 3 && lower.starts_with(d)))
        .map(|i| i as u8)
        .ok_or_else(|| format!("{s:?} is not a weekday: use Mon, Tue, Wed, Thu, Fri, Sat, Sun"))
}

fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.trim().as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The `[section]` header above an offset, for errors from the TOML parser,
/// which names the key but not the table it sits in.
fn enclosing_section(text: &str, offset: usize) -> String {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split('#').next().unwrap_or(l).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse("airlock.toml", text, &Env::default())
    }

    fn only_error(text: &str, env: &Env) -> String {
        let errs = Config::parse("airlock.toml", text, env).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        errs.to_string()
    }

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:3128");
        assert_eq!(c.proxy.max_body, 10 * 1024 * 1024);
        assert_eq!(c.review.listen.to_string(), "127.0.0.1:3129");
        assert_eq!(c.review.public_url, "http://127.0.0.1:3129");
        assert_eq!(c.store.path, PathBuf::from("./airlock-data"));
        assert_eq!(c.tls.ca_dir, PathBuf::from("./certs"));
        assert_eq!(c.rules.dir, PathBuf::from("./rules"));
        assert_eq!(c.defaults.unmatched, Action::Review);
        assert_eq!(c.defaults.window.to_string(), "4h");
        assert_eq!(c.defaults.held_status, StatusCode::FORBIDDEN);
        assert_eq!(c.business_hours, WorkingClock::default());
        assert_eq!((c.business_hours.start, c.business_hours.end), (540, 1020));
    }

    #[test]
    fn the_store_url_comes_from_the_file_a_file_or_the_environment_and_is_never_shown() {
        let url = "postgres://airlock:hunter2@db:5432/airlock";
        let c = parse(&format!("[store]\nurl = \"{url}\"\n")).unwrap();
        assert_eq!(c.store.url.as_ref().map(Secret::expose), Some(url));
        assert!(!format!("{c:?}").contains("hunter2"), "Debug redacts it");
        let env = Env::from_pairs([("AIRLOCK_STORE_URL", url)]);
        let c = Config::parse("airlock.toml", "", &env).unwrap();
        assert_eq!(c.store.url.as_ref().map(Secret::expose), Some(url));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, format!("{url}\n")).unwrap();
        let text = format!("[store]\nurl_file = {:?}\n", file.display().to_string());
        let c = parse(&text).unwrap();
        assert_eq!(c.store.url.as_ref().map(Secret::expose), Some(url));
        assert!(parse("").unwrap().store.url.is_none());
        // Not a PostgreSQL URL: the error does not repeat it.
        let msg = only_error(
            "[store]\nurl = \"mysql://u:hunter2@db/x\"\n",
            &Env::default(),
        );
        assert!(
            msg.starts_with("airlock.toml:2:7: [store] url: must be a PostgreSQL URL"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        let both = format!(
            "[store]\nurl = \"{url}\"\nurl_file = {:?}\n",
            file.display().to_string()
        );
        assert!(only_error(&both, &Env::default()).contains("not both"));
        let missing = only_error(
            "[store]\nurl_file = \"/nonexistent/url\"\n",
            &Env::default(),
        );
        assert!(
            missing.contains("cannot read /nonexistent/url"),
            "{missing}"
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_section() {
        let text = "[proxy]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n";
        let msg = only_error(text, &Env::default());
        assert!(msg.starts_with("airlock.toml:3:1: [proxy]: "), "{msg}");
        assert!(msg.contains("listn"), "{msg}");
    }

    #[test]
    fn bad_value_names_line_column_and_key() {
        let text = "[defaults]\nunmatched = \"maybe\"\n";
        let msg = only_error(text, &Env::default());
        assert_eq!(
            msg,
            "airlock.toml:2:13: [defaults] unmatched: \"maybe\" is not an action: use automatic, review or deny"
        );
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text =
            "[proxy]\nlisten = \"nope\"\nmax_body = \"10 parsecs\"\n[defaults]\nheld_status = 99\n";
        let errs = parse(text).unwrap_err();
        assert_eq!(errs.0.len(), 3, "{errs}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = Env::from_pairs([
            ("AIRLOCK_PROXY_LISTEN", "127.0.0.1:4000"),
            ("AIRLOCK_DEFAULTS_HELD_STATUS", "202"),
        ]);
        let c = Config::parse("airlock.toml", "[proxy]\nlisten = \"127.0.0.1:1\"\n", &env).unwrap();
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.defaults.held_status, StatusCode::ACCEPTED);
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let env = Env::from_pairs([("AIRLOCK_DEFAULTS_HELD_STATUS", "lots")]);
        let msg = only_error("", &env);
        assert!(
            msg.starts_with(
                "environment variable AIRLOCK_DEFAULTS_HELD_STATUS: [defaults] held_status:"
            ),
            "{msg}"
        );
    }

    #[test]
    fn misspelt_override_is_refused_but_foreign_variables_are_not() {
        let env = Env::from_pairs([
            ("AIRLOCK_PROXY_LISTN", "x"),
            ("AIRLOCK_SERVICE_HOST", "10.0.0.1"),
            ("AIRLOCK_PORT_3129_TCP", "tcp://10.0.0.1:3129"),
        ]);
        let msg = only_error("", &env);
        assert!(msg.contains("AIRLOCK_PROXY_LISTN"), "{msg}");
        assert!(msg.contains("AIRLOCK_PROXY_LISTEN"), "{msg}");
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        let msg = only_error(
            "[business_hours]\ntimezone = \"Mars/Olympus\"\n",
            &Env::default(),
        );
        assert!(
            msg.starts_with("airlock.toml:2:12: [business_hours] timezone:"),
            "{msg}"
        );
    }

    #[test]
    fn sizes_clock_and_weekdays_parse() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1KB").unwrap(), 1000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1TiB").is_err());
        assert_eq!(parse_clock("09:30").unwrap(), 570);
        assert_eq!(parse_clock("24:00").unwrap(), 1440);
        assert!(parse_clock("9:30").is_err());
        assert!(parse_clock("12:60").is_err());
        assert_eq!(parse_weekday("Sat").unwrap(), 5);
        assert_eq!(parse_weekday("sunday").unwrap(), 6);
        assert!(parse_weekday("Funday").is_err());
    }

    #[test]
    fn proxy_workers_default_to_one_per_cpu_and_can_be_set() {
        let config = Config::parse("airlock.toml", "", &Env::default()).unwrap();
        assert_eq!(config.proxy.workers, 0);
        let config =
            Config::parse("airlock.toml", "[proxy]\nworkers = 3\n", &Env::default()).unwrap();
        assert_eq!(config.proxy.workers, 3);
        let env = Env::from_pairs([("AIRLOCK_PROXY_WORKERS", "1")]);
        let config = Config::parse("airlock.toml", "[proxy]\nworkers = 3\n", &env).unwrap();
        assert_eq!(config.proxy.workers, 1);
        let errors =
            Config::parse("airlock.toml", "[proxy]\nworkers = -1\n", &Env::default()).unwrap_err();
        assert!(errors.to_string().contains("airlock.toml:2:11"), "{errors}");
    }

    #[test]
    fn notify_sinks_have_distinct_names_and_sound_retry_settings() {
        let text = "[[notify]]\nurl = \"https://a.example/x\"\nname = \"ops\"\nbackoff = \"250ms\"\nmax_attempts = 3\n\
                    [[notify]]\nurl = \"https://b.example/x\"\n";
        let config = Config::parse("airlock.toml", text, &Env::default()).unwrap();
        assert_eq!(config.notify[0].name, "ops");
        assert_eq!(config.notify[0].retry.backoff, Duration::from_millis(250));
        assert_eq!(config.notify[0].retry.max_attempts, 3);
        assert_eq!(config.notify[1].name, "notify-2");
        assert_eq!(config.notify[1].retry, RetryPolicy::default());

        let twice = "[[notify]]\nurl = \"https://a.example/x\"\nname = \"ops\"\n\
                     [[notify]]\nurl = \"https://b.example/x\"\nname = \"ops\"\n";
        let errors = Config::parse("airlock.toml", twice, &Env::default()).unwrap_err();
        assert!(
            errors.to_string().contains("\"ops\" is used twice"),
            "{errors}"
        );

        let zero = "[[notify]]\nurl = \"https://a.example/x\"\nmax_attempts = 0\n";
        let errors = Config::parse("airlock.toml", zero, &Env::default()).unwrap_err();
        let e = errors.to_string();
        assert!(
            e.contains("airlock.toml:3:16") && e.contains("max_attempts"),
            "{e}"
        );
    }

    #[test]
    fn reviewers_and_notify_sinks_are_validated() {
        let good = "a".repeat(64);
        let text = format!(
            "[[reviewer]]\nname = \"alice\"\ntoken_sha256 = \"{good}\"\nadmin = true\n\
             [[reviewer]]\nname = \"bob\"\ntoken_sha256 = \"xyz\"\n\
             [[notify]]\nurl = \"https://hooks.example/x\"\nformat = \"slack\"\nevents = [\"held\", \"exploded\"]\n"
        );
        let errs = parse(&text).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        assert!(
            errs.0[0].to_string().starts_with("airlock.toml:7:16:"),
            "{errs}"
        );
        assert!(errs.0[1].to_string().contains("exploded"), "{errs}");
    }

    #[test]
    fn the_pending_cap_defaults_to_20_can_be_set_and_refuses_0() {
        assert_eq!(parse("").unwrap().defaults.max_pending_per_agent, 20);
        let c = parse("[defaults]\nmax_pending_per_agent = 5\n").unwrap();
        assert_eq!(c.defaults.max_pending_per_agent, 5);
        let env = Env::from_pairs([("AIRLOCK_DEFAULTS_MAX_PENDING_PER_AGENT", "7")]);
        let c = Config::parse(
            "airlock.toml",
            "[defaults]\nmax_pending_per_agent = 5\n",
            &env,
        )
        .unwrap();
        assert_eq!(c.defaults.max_pending_per_agent, 7);
        let msg = only_error("[defaults]\nmax_pending_per_agent = 0\n", &Env::default());
        assert!(
            msg.starts_with("airlock.toml:2:25: [defaults] max_pending_per_agent: at least 1"),
            "{msg}"
        );
        let env = Env::from_pairs([("AIRLOCK_DEFAULTS_MAX_PENDING_PER_AGENT", "many")]);
        let msg = only_error("", &env);
        assert!(
            msg.starts_with("environment variable AIRLOCK_DEFAULTS_MAX_PENDING_PER_AGENT:"),
            "{msg}"
        );
    }

    fn reviewer_toml(name: &str, admin: bool) -> String {
        let hash = "a".repeat(64);
        format!("[[reviewer]]\nname = \"{name}\"\ntoken_sha256 = \"{hash}\"\nadmin = {admin}\n")
    }

    #[test]
    fn unmatched_reviewers_must_be_configured_reviewers() {
        let text = format!(
            "[defaults]\nunmatched_reviewers = [\"bob\"]\n{}{}",
            reviewer_toml("alice", false),
            reviewer_toml("bob", false)
        );
        assert_eq!(parse(&text).unwrap().defaults.unmatched_reviewers, ["bob"]);
        assert!(parse("").unwrap().defaults.unmatched_reviewers.is_empty());
        let text = format!(
            "[defaults]\nunmatched_reviewers = [\"bob\", \"carol\"]\n{}",
            reviewer_toml("bob", false)
        );
        let msg = only_error(&text, &Env::default());
        assert_eq!(
            msg,
            "airlock.toml:2:23: [defaults] unmatched_reviewers: \"carol\" is not a configured [[reviewer]] name"
        );
    }

    #[test]
    fn agents_need_a_plain_name_once_and_a_token_hash() {
        let hash = "b".repeat(64);
        let text = format!("[[agent]]\nname = \"quote-bot\"\ntoken_sha256 = \"{hash}\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.agents.len(), 1);
        assert_eq!(c.agents[0].name, "quote-bot");
        assert_eq!(c.agents[0].token_sha256, [0xbb; 32]);
        assert!(parse("").unwrap().agents.is_empty());

        let msg = only_error(
            &format!("[[agent]]\nname = \"a:b\"\ntoken_sha256 = \"{hash}\"\n"),
            &Env::default(),
        );
        assert!(
            msg.starts_with("airlock.toml:2:8: [[agent]] name:"),
            "{msg}"
        );
        let msg = only_error(
            "[[agent]]\nname = \"quote-bot\"\ntoken_sha256 = \"short\"\n",
            &Env::default(),
        );
        assert!(
            msg.starts_with("airlock.toml:3:16: [[agent]] token_sha256:"),
            "{msg}"
        );
        let twice = format!("{text}{text}");
        let msg = only_error(&twice, &Env::default());
        assert!(
            msg.starts_with(
                "airlock.toml:5:8: [[agent]] name: agent \"quote-bot\" is listed twice"
            ),
            "{msg}"
        );
        let msg = only_error("[[agent]]\nname = \"x\"\n", &Env::default());
        assert!(msg.contains("token_sha256"), "{msg}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let msg = only_error("[proxy\nlisten = 1\n", &Env::default());
        assert!(msg.starts_with("airlock.toml:1:"), "{msg}");
    }
}
