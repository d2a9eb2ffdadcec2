//! The command line's work, one function per subcommand, each returning the
//! process exit code (0 success, 1 runtime failure, 2 bad usage or
//! configuration) after printing what a person needs.
//!
//! `main.rs` parses arguments and calls these; nothing here parses
//! arguments or starts anything but what the command names.

use std::io::Write;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::config::{Config, Env};
use crate::rules::{BodyView, RequestView};
use crate::server;
use crate::tls::Ca;

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

/// Reads the configuration or explains why not (exit 2).
pub fn load_config(path: Option<&Path>) -> Result<Config, u8> {
    Config::load(path, &Env::from_process()).map_err(|errors| {
        eprintln!("airlock: the configuration could not be loaded:\n{errors}");
        USAGE
    })
}

/// `airlock run`.
pub fn run(config: Config) -> u8 {
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
    match runtime.block_on(server::run(config)) {
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
        Ok((_, true)) => {
            println!(
                "created {} and {} (private, mode 0600)",
                dir.join(crate::tls::ca::CERT_FILE).display(),
                dir.join(crate::tls::ca::KEY_FILE).display()
            );
            OK
        }
        Ok((_, false)) => {
            println!(
                "{} already holds an airlock CA; left as it is",
                dir.display()
            );
            OK
        }
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
    let written = match out {
        Some(path) => std::fs::write(path, &bundle).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout()
            .write_all(bundle.as_bytes())
            .map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => {
            if let Some(path) = out {
                eprintln!("wrote {}", path.display());
            }
            OK
        }
        Err(e) => {
            eprintln!("airlock: {e}");
            FAILURE
        }
    }
}

/// `airlock rules check`: the classification table, or every error.
pub fn rules_check(config: &Config) -> u8 {
    match server::load_rules(config) {
        Ok(rules) => {
            print!("{}", rules.classification_table());
            println!(
                "{} rules from {}",
                rules.rules().len(),
                config.rules.dir.display()
            );
            for risk in rules.fronting_risks() {
                println!("{risk}");
            }
            // A queue nobody owns fills silently: say so, without failing.
            for rule in rules.rules() {
                if rule.action == crate::rules::Action::Review && rule.reviewers.is_empty() {
                    println!(
                        "no named owner: {} ({}) is reviewed but lists no reviewers",
                        rule.name, rule.location
                    );
                }
                // A rule's own window is checked when it loads; the default
                // window only here, where the configuration is known.
                if let (None, Some(after), crate::window::Window::Fixed(window)) =
                    (rule.window, rule.escalate_after, config.defaults.window)
                    && rule.action == crate::rules::Action::Review
                    && after >= window
                {
                    println!(
                        "never escalates: {} ({}) has escalate_after {} but the default window is {}; holds expire first",
                        rule.name,
                        rule.location,
                        crate::window::format_duration(after),
                        crate::window::format_duration(window)
                    );
                }
            }
            OK
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("airlock: {} error(s) in the rules", errors.len());
            USAGE
        }
    }
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
    print!("{}", rules.explain(&view, body));
    OK
}

/// `airlock audit verify`: walks the audit chain; names the first bad record.
pub fn audit_verify(config: &Config) -> u8 {
    let store =
        match crate::holds::Store::open(&config.store.path, crate::holds::store::system_clock()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "airlock: cannot open the store at {}: {e} (is airlock running on it?)",
                    config.store.path.display()
                );
                return FAILURE;
            }
        };
    match store.verify_audit() {
        Ok(n) => {
            println!("{n} audit records; the hash chain is intact");
            OK
        }
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
    print!("{text}");
    OK
}

fn report_from_store(config: &Config, period: &str) -> Result<crate::report::Report, String> {
    let rules = server::load_rules(config).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the rules could not be loaded:\n{}", lines.join("\n"))
    })?;
    if !config.store.path.exists() {
        return Err(format!(
            "there is no store at {}: nothing has been held yet, or [store] path names another directory",
            config.store.path.display()
        ));
    }
    let store = crate::holds::Store::open(&config.store.path, crate::holds::store::system_clock())
        .map_err(|e| {
            format!(
                "cannot open the store at {}: {e} (while airlock runs on it, use --from {} with AIRLOCK_TOKEN set)",
                config.store.path.display(),
                config.review.public_url
            )
        })?;
    let since = crate::report::since(store.now(), period)?;
    crate::report::Report::build(&store, &rules, since).map_err(|e| e.to_string())
}

fn report_from(config: &Config, url: &str, since: &str) -> Result<crate::report::Report, String> {
    let token = std::env::var("AIRLOCK_TOKEN")
        .map_err(|_| "--from needs a reviewer's token in AIRLOCK_TOKEN".to_owned())?;
    let uri: Uri = format!("{}/api/stats?since={since}", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("--from {url}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        use http_body_util::BodyExt;
        let upstream = crate::upstream::Upstream::new(&config.proxy).map_err(|e| e.to_string())?;
        let req = http::Request::get(uri)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(http_body_util::Either::Right(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
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
