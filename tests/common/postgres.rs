//! A private PostgreSQL for the tests: one cluster per test binary, started
//! on first use from Debian's server binaries (`initdb`, `postgres`) in a
//! temporary directory, listening on 127.0.0.1 only, with trust
//! authentication for its own user. Each test gets a fresh database.
//!
//! PostgreSQL refuses to run as root: as root the cluster runs as the
//! `postgres` user the Debian package creates. The server is started with a
//! parent-death signal, so it stops when the test binary exits however it
//! ends; clusters left by binaries that died are removed on the next start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::require_tool;

/// The directory every test cluster lives under, one per binary's pid.
const ROOT: &str = "airlock-test-postgres";

/// A running test cluster.
pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    /// Who runs PostgreSQL's tools: nobody when the tests are not root.
    run_as: Option<&'static str>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// A URL of a new, empty database on the test cluster.
pub fn database() -> String {
    cluster().create_database()
}

impl Cluster {
    fn start() -> Cluster {
        let initdb = require_tool("initdb");
        let postgres = require_tool("postgres");
        let root = std::env::temp_dir().join(ROOT);
        std::fs::create_dir_all(&root).unwrap();
        remove_abandoned(&root);
        let dir = root.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(&root)
                .status()
                .unwrap();
            assert!(status.success(), "chown {} to {user}", root.display());
        }
        let data = dir.join("data");
        let out = as_user(run_as, &initdb)
            .args([
                "--auth=trust",
                "--username=airlock",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        // The server dies with this test binary (PR_SET_PDEATHSIG), set by
        // setpriv after it changes user and before it execs the server, so
        // the server itself is the test binary's child.
        let mut server = Command::new(require_tool("setpriv"));
        if let Some(user) = run_as {
            server.args(["--reuid", user, "--regid", user, "--init-groups"]);
        }
        server.args(["--pdeathsig", "KILL", "--"]);
        server
            .arg(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // A parent-death signal fires when the *thread* that spawned the
        // child ends, so the server is spawned from a thread that lives as
        // long as the binary, never from a test's own thread.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = server.spawn();
            let started = child.as_ref().map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send(started);
            let _keep = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("starting the test PostgreSQL: {e}"));
        let cluster = Cluster { port, dir, run_as };
        cluster.wait_ready();
        cluster
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the test PostgreSQL did not start on port {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// Runs one SQL statement with `psql` in `database`; its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(require_tool("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "airlock",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn create_database(&self) -> String {
        let name = format!("test_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        format!("postgres://airlock@127.0.0.1:{}/{name}", self.port)
    }

    /// The postmaster's process id, from its `postmaster.pid`.
    pub fn postmaster_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok())
            .expect("postmaster.pid names the server")
    }

    /// Whether the cluster's tools run as another user (tests run as root).
    pub fn runs_as(&self) -> Option<&'static str> {
        self.run_as
    }
}

fn as_user(user: Option<&str>, tool: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new(require_tool("runuser"));
            c.args(["-u", user, "--"]).arg(tool);
            c
        }
        None => Command::new(tool),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes the clusters of test binaries that are no longer running.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let alive = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
