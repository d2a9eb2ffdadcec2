//! The command line's work, one function per subcommand, each returning the
//! process exit code (0 success, 1 runtime failure, 2 bad usage or
//! configuration) after printing what a person needs.
//!
//! `main.rs` parses arguments and calls these; nothing here parses
//! arguments or starts anything but what the command names.
//!
//! Everything meant for standard output goes through [`emit`], so a reader
//! that goes away early (`airlock explain … | head`) ends the command
//! quietly instead of with a panic.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::config::{Config, Env};
use crate::rules::{BodyView, RequestView};
use crate::server;
use crate::tls::Ca;

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

/// Writes `text` to standard output. When the reader has gone away (a
/// closed pipe) the command ends quietly with success, as `grep` or `cat`
/// do under `head` (the reader had what it wanted); any other write failure
/// is a runtime failure.
pub fn emit(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => OK,
        Err(e) => {
            eprintln!("airlock: cannot write to standard output: {e}");
            FAILURE
        }
    }
}

/// How wide printed tables may be: `COLUMNS` when set, else the terminal's
/// width when standard output is one, else unlimited (a file or a pipe gets
/// the full text).
pub fn output_width() -> Option<usize> {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0);
    columns.or_else(|| {
        let out = std::io::stdout();
        if !out.is_terminal() {
            return None;
        }
        terminal_size::terminal_size_of(&out).map(|(width, _)| usize::from(width.0))
    })
}

/// Reads the configuration or explains why not (exit 2).
pub fn load_config(path: Option<&Path>) -> Result<Config, u8> {
    Config::load(path, &Env::from_process()).map_err(|errors| {
        eprintln!("airlock: the configuration could not be loaded:\n{errors}");
        USAGE
    })
}

/// `airlock run`, or with [`server::Role::Review`], `airlock review`.
pub fn run(config: Config, role: server::Role) -> u8 {
    // Agent traffic runs on the proxy workers' own threads; this runtime
    // serves reviewers and the background tasks, which two threads carry.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlock: cannot start the runtime: {e}");
            return FAILURE;
        }
    };
    match runtime.block_on(server::run(config, role)) {
        Ok(()) => OK,
        Err(e) => {
            eprintln!("airlock: {e}");
            e.exit_code()
        }
    }
}

/// `airlock ca init`: creates the CA in `dir` unless it is there already.
pub fn ca_init(dir: &Path) -> u8 {
    match Ca::load_or_create(dir) {
        Ok((_, true)) => emit(&format!(
            "created {} and {} (private, mode 0600)\n",
            dir.join(crate::tls::ca::CERT_FILE).display(),
            dir.join(crate::tls::ca::KEY_FILE).display()
        )),
        Ok((_, false)) => emit(&format!(
            "{} already holds an airlock CA; left as it is\n",
            dir.display()
        )),
        Err(e) => {
            eprintln!("airlock: {e}");
            USAGE
        }
    }
}

/// `airlock ca bundle`: the system roots plus the airlock CA, for
/// `SSL_CERT_FILE`, written to `out` or standard output.
pub fn ca_bundle(config: &Config, out: Option<&Path>) -> u8 {
    let ca = match Ca::load_or_create(&config.tls.ca_dir) {
        Ok((ca, _)) => ca,
        Err(e) => {
            eprintln!("airlock: {e}");
            return USAGE;
        }
    };
    let mut bundle = String::new();
    for root in crate::upstream::system_roots_pem() {
        bundle.push_str(&root);
    }
    bundle.push_str("# airlock local CA\n");
    bundle.push_str(ca.cert_pem());
    let Some(path) = out else {
        return emit(&bundle);
    };
    match std::fs::write(path, &bundle) {
        Ok(()) => {
            eprintln!("wrote {}", path.display());
            OK
        }
        Err(e) => {
            eprintln!("airlock: {}: {e}", path.display());
            FAILURE
        }
    }
}

/// How `airlock rules check` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesFormat {
    /// The classification table, fitted to `width` columns when given.
    Text { width: Option<usize> },
    /// Every rule in full, with the warnings, as one JSON object.
    Json,
}

/// `airlock rules check`: the classification table and what a person
/// should know about the rules, or every error (exit 2).
pub fn rules_check(config: &Config, format: RulesFormat) -> u8 {
    let rules = match server::load_rules(config) {
        Ok(rules) => rules,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("airlock: {} error(s) in the rules", errors.len());
            return USAGE;
        }
    };
    let origin = crate::rules::shipped::origin(&config.rules.dir);
    let warnings = rules_warnings(config, &rules);
    let text = match format {
        RulesFormat::Text { width } => {
            let mut text = match width {
                Some(width) => rules.classification_table_within(width),
                None => rules.classification_table(),
            };
            text.push_str(&format!("{} rules from {origin}\n", rules.rules().len()));
            for c in &config.credentials {
                text.push_str(&format!(
                    "credential {}: sets {} on requests to {} (always intercepted)\n",
                    c.name,
                    c.header,
                    c.hosts.join(", ")
                ));
            }
            for warning in &warnings {
                text.push_str(warning);
                text.push('\n');
            }
            text
        }
        RulesFormat::Json => {
            let mut json = rules.classification_json();
            json["from"] = match origin {
                crate::rules::shipped::Origin::Dir(dir) => dir.display().to_string().into(),
                crate::rules::shipped::Origin::Shipped => "shipped".into(),
            };
            json["warnings"] = warnings.into();
            json["credentials"] = config
                .credentials
                .iter()
                .map(|c| {
                    serde_json::json!({ "name": c.name, "header": c.header.as_str(), "hosts": c.hosts })
                })
                .collect::<Vec<_>>()
                .into();
            match serde_json::to_string_pretty(&json) {
                Ok(text) => text + "\n",
                Err(e) => {
                    eprintln!("airlock: {e}");
                    return FAILURE;
                }
            }
        }
    };
    emit(&text)
}

/// What `rules check` says about valid rules without failing.
fn rules_warnings(config: &Config, rules: &crate::rules::RuleSet) -> Vec<String> {
    let mut warnings: Vec<String> = rules
        .fronting_risks()
        .iter()
        .map(ToString::to_string)
        .collect();
    // A credential for hosts every request to is refused is never used:
    // probably a host spelt differently from the rules'.
    for c in &config.credentials {
        for host in c.hosts.iter().filter(|h| h.contains(['*', '?', '[', '{'])) {
            warnings.push(format!(
                "credential {} goes to every host {host} matches: a wildcard can take in hosts others control (user content, customer subdomains); list the provider's API hosts by name",
                c.name
            ));
        }
        for host in &c.hosts {
            let sample = host.replace("**", "a").replace(['*', '?'], "a");
            if let crate::rules::ConnectDecision::Refuse(_) = rules.decide_connect(&sample) {
                warnings.push(format!(
                    "credential {} is never used for {host}: every request to it is refused",
                    c.name
                ));
            }
        }
    }
    for rule in rules.rules() {
        // A queue nobody owns fills silently: say so, without failing.
        if rule.action == crate::rules::Action::Review && rule.reviewers.is_empty() {
            warnings.push(format!(
                "no named owner: {} ({}) is reviewed but lists no reviewers",
                rule.name, rule.location
            ));
        }
        // A rule's own window is checked when it loads; the default
        // window only here, where the configuration is known.
        if let (None, Some(after), crate::window::Window::Fixed(window)) =
            (rule.window, rule.escalate_after, config.defaults.window)
            && rule.action == crate::rules::Action::Review
            && after >= window
        {
            warnings.push(format!(
                "never escalates: {} ({}) has escalate_after {} but the default window is {}; holds expire first",
                rule.name,
                rule.location,
                crate::window::format_duration(after),
                crate::window::format_duration(window)
            ));
        }
    }
    warnings
}

/// `airlock rules init`: writes the shipped rule packs into `dir` for
/// editing; a file already there is named and left as it is.
pub fn rules_init(dir: &Path) -> u8 {
    let written = match crate::rules::shipped::init(dir) {
        Ok(written) => written,
        Err(e) => {
            eprintln!("airlock: {e}");
            return FAILURE;
        }
    };
    let mut text = String::new();
    for w in &written {
        if w.created {
            text.push_str(&format!("wrote {}\n", w.path.display()));
        } else {
            text.push_str(&format!(
                "kept {}: it exists, and rules init never overwrites\n",
                w.path.display()
            ));
        }
    }
    emit(&text)
}

/// `airlock explain METHOD URL`: which rule matches and why.
pub fn explain(
    config: &Config,
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&PathBuf>,
) -> u8 {
    let rules = match server::load_rules(config) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return USAGE;
        }
    };
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("airlock: {url:?} is not a URL: {e}");
            return USAGE;
        }
    };
    let Some(host) = uri.host() else {
        eprintln!("airlock: {url:?} needs a scheme and host, as in https://api.example.com/v1/x");
        return USAGE;
    };
    let mut map = HeaderMap::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("airlock: header {h:?} is not 'Name: value'");
            return USAGE;
        };
        match (
            HeaderName::from_bytes(k.trim().as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) {
            (Ok(k), Ok(v)) => {
                map.append(k, v);
            }
            _ => {
                eprintln!("airlock: header {h:?} is not a valid header");
                return USAGE;
            }
        }
    }
    let body_bytes = match body {
        Some(path) => match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("airlock: {}: {e}", path.display());
                return USAGE;
            }
        },
        None => None,
    };
    let method = method.to_ascii_uppercase();
    let view = RequestView {
        method: &method,
        host,
        path: uri.path(),
        query: uri.query(),
        headers: &map,
    };
    // Read as the proxy reads it: Content-Encoding undone, UTF-16/32 as UTF-8.
    let decoded = body_bytes
        .as_deref()
        .map(|b| crate::canonical::body::decode(&map, b, u64::MAX));
    let body = match &decoded {
        Some(Ok(b)) => BodyView::Read(b),
        Some(Err(_)) => BodyView::Undecodable,
        None => BodyView::Unread,
    };
    emit(&rules.explain(&view, body).to_string())
}

/// Where the configured store is, for messages: never the URL itself.
fn store_place(config: &Config) -> String {
    match &config.store.url {
        Some(_) => "the PostgreSQL store ([store] url)".to_owned(),
        None => format!("the store at {}", config.store.path.display()),
    }
}

/// A one-off runtime for a command that reads the store.
fn command_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Opens the configured store for a command (sled: only while no airlock
/// runs on it).
async fn open_store(config: &Config) -> Result<crate::holds::Store, String> {
    crate::holds::Store::from_config(&config.store, crate::holds::store::system_clock())
        .await
        .map_err(|e| {
            let hint = if config.store.url.is_none() {
                " (is airlock running on it?)"
            } else {
                ""
            };
            format!("cannot open {}: {e}{hint}", store_place(config))
        })
}

/// `airlock audit verify`: walks the audit chain; names the first bad record.
pub fn audit_verify(config: &Config) -> u8 {
    let verified = command_runtime().and_then(|rt| {
        rt.block_on(async {
            let store = open_store(config).await?;
            store.verify_audit().await.map_err(|e| e.to_string())
        })
    });
    match verified {
        Ok(n) => emit(&format!("{n} audit records; the hash chain is intact\n")),
        Err(e) => {
            eprintln!("airlock: {e}");
            FAILURE
        }
    }
}

/// How `airlock report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
}

/// `airlock report`: the monthly queue review. Reads the store directly, or,
/// with `from` (a running airlock's review URL, since the store can be open
/// in only one process), its `/api/stats` with the token in `AIRLOCK_TOKEN`.
pub fn report(config: &Config, since: &str, format: ReportFormat, from: Option<&str>) -> u8 {
    // Checked here, so a bad period is a usage error either way.
    if let Err(e) = crate::report::since(jiff::Timestamp::now(), since) {
        eprintln!("airlock: --since: {e}");
        return USAGE;
    }
    let report = match from {
        Some(url) => report_from(config, url, since),
        None => report_from_store(config, since),
    };
    let report = match report {
        Ok(r) => r,
        Err(message) => {
            eprintln!("airlock: {message}");
            return FAILURE;
        }
    };
    let text = match format {
        ReportFormat::Text => report.to_text(),
        ReportFormat::Csv => report.to_csv(),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("airlock: {e}");
                return FAILURE;
            }
        },
    };
    emit(&text)
}

fn report_from_store(config: &Config, period: &str) -> Result<crate::report::Report, String> {
    let rules = server::load_rules(config).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the rules could not be loaded:\n{}", lines.join("\n"))
    })?;
    if config.store.url.is_none() && !config.store.path.exists() {
        // Nothing has been held yet: an empty review, and no store made
        // just to read it.
        let now = jiff::Timestamp::now();
        return Ok(crate::report::Report::empty(
            &rules,
            crate::report::since(now, period)?,
            now,
        ));
    }
    command_runtime()?.block_on(async {
        let store = open_store(config).await.map_err(|e| {
            if config.store.url.is_none() {
                format!(
                    "{e}; while airlock runs on it, use --from {} with AIRLOCK_TOKEN set",
                    config.review.public_url
                )
            } else {
                e
            }
        })?;
        let since = crate::report::since(store.now(), period)?;
        crate::report::Report::build(&store, &rules, since)
            .await
            .map_err(|e| e.to_string())
    })
}

fn report_from(config: &Config, url: &str, since: &str) -> Result<crate::report::Report, String> {
    let token = std::env::var("AIRLOCK_TOKEN")
        .map_err(|_| "--from needs a reviewer's token in AIRLOCK_TOKEN".to_owned())?;
    let uri: Uri = format!("{}/api/stats?since={since}", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("--from {url}: {e}"))?;
    command_runtime()?.block_on(async {
        use http_body_util::BodyExt;
        let upstream = crate::upstream::Upstream::new(&config.proxy).map_err(|e| e.to_string())?;
        let req = http::Request::get(uri)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(crate::upstream::full(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        let res = upstream
            .send(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not a report: {e}"))
    })
}
