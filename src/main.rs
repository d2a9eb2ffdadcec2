//! The `airlock` command: parses arguments and hands each subcommand to
//! `airlock::commands`. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use airlock::commands;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Puts a human before an AI agent's irreversible actions"
)]
struct Cli {
    /// Log lines as text or as JSON objects (one per line). The filter is
    /// RUST_LOG (default "info"), e.g. RUST_LOG=airlock=debug.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and the review server.
    Run {
        /// Configuration file (default: $AIRLOCK_CONFIG, else embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The review server alone (page, API, notifications, expiry and
    /// escalation), for a fleet sharing one PostgreSQL store.
    Review {
        /// Configuration file (default: $AIRLOCK_CONFIG, else embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The local certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The monthly queue review: per-rule figures and findings.
    Report {
        /// The period: holds made this long ago or later (30d, 12h, ...).
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long, value_enum, default_value_t = ReportFormatArg::Text)]
        format: ReportFormatArg,
        /// Read a running airlock's review server (e.g. http://127.0.0.1:3129)
        /// instead of the store; the token comes from AIRLOCK_TOKEN.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Which rule matches a request, why, and what airlock would do.
    Explain {
        /// HTTP method, e.g. POST.
        method: String,
        /// Full URL, e.g. https://api.sendgrid.com/v3/mail/send.
        url: String,
        /// A request header, 'Name: value' (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// A file holding the request body.
        #[arg(long)]
        body: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA (ca.pem, ca-key.pem) if it is missing.
    Init {
        /// Where (default: [tls] ca_dir, ./certs).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write the system roots plus the airlock CA, for SSL_CERT_FILE.
    Bundle {
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exits 1 naming the first bad record.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormatArg {
    Text,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load and validate the rules; print the classification table.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// A table fitted to the terminal (full width into a file or pipe),
        /// or every rule in full as JSON.
        #[arg(long, value_enum, default_value_t = RulesFormatArg::Text)]
        format: RulesFormatArg,
    },
    /// Write the shipped rule packs out for editing; never overwrites a file.
    Init {
        /// Where (default: [rules] dir, ./rules).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RulesFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match cli.command {
        Command::Run { config } => match commands::load_config(config.as_deref()) {
            Ok(config) => commands::run(config, airlock::server::Role::Proxy),
            Err(code) => code,
        },
        Command::Review { config } => match commands::load_config(config.as_deref()) {
            Ok(config) => commands::run(config, airlock::server::Role::Review),
            Err(code) => code,
        },
        Command::Ca {
            command: CaCommand::Init { dir },
        } => match dir {
            Some(dir) => commands::ca_init(&dir),
            None => match commands::load_config(None) {
                Ok(config) => commands::ca_init(&config.tls.ca_dir),
                Err(code) => code,
            },
        },
        Command::Ca {
            command: CaCommand::Bundle { out, config },
        } => match commands::load_config(config.as_deref()) {
            Ok(config) => commands::ca_bundle(&config, out.as_deref()),
            Err(code) => code,
        },
        Command::Rules {
            command: RulesCommand::Check { config, format },
        } => match commands::load_config(config.as_deref()) {
            Ok(config) => {
                let format = match format {
                    RulesFormatArg::Text => commands::RulesFormat::Text {
                        width: commands::output_width(),
                    },
                    RulesFormatArg::Json => commands::RulesFormat::Json,
                };
                commands::rules_check(&config, format)
            }
            Err(code) => code,
        },
        Command::Rules {
            command: RulesCommand::Init { dir },
        } => match dir {
            Some(dir) => commands::rules_init(&dir),
            None => match commands::load_config(None) {
                Ok(config) => commands::rules_init(&config.rules.dir),
                Err(code) => code,
            },
        },
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => match commands::load_config(config.as_deref()) {
            Ok(config) => commands::audit_verify(&config),
            Err(code) => code,
        },
        Command::Report {
            since,
            format,
            from,
            config,
        } => match commands::load_config(config.as_deref()) {
            Ok(config) => {
                let format = match format {
                    ReportFormatArg::Text => commands::ReportFormat::Text,
                    ReportFormatArg::Json => commands::ReportFormat::Json,
                    ReportFormatArg::Csv => commands::ReportFormat::Csv,
                };
                commands::report(&config, &since, format, from.as_deref())
            }
            Err(code) => code,
        },
        Command::Explain {
            method,
            url,
            headers,
            body,
            config,
        } => match commands::load_config(config.as_deref()) {
            Ok(config) => commands::explain(&config, &method, &url, &headers, body.as_ref()),
            Err(code) => code,
        },
    };
    ExitCode::from(code)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
