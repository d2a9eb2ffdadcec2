//! Transparent interception for real: the test (as root) creates a private
//! network namespace, runs airlock, the upstreams and the agent inside it,
//! and installs the redirect with the very script the Kubernetes example's
//! init container runs (`examples/kubernetes/transparent/redirect.sh`),
//! exempting airlock's uid. The agent, curl as another uid with no proxy
//! variables at all, is held, passed (over IPv4 and IPv6) and refused
//! without SNI; a connection
//! straight to the transparent port is refused as a loop. The host's own
//! packet filter is never touched: every rule lives in the namespace, which
//! goes when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unreachable_pub)]

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{Binary, Pki, require_tool, upstream_on, write_config};

/// The uid the agent runs as: redirected, unlike airlock's (root here).
const AGENT_UID: &str = "2000";

const RULES: &str = r#"
[[rule]]
name = "mail-read"
action = "automatic"
host = ["mail.test"]
method = ["GET"]
path = ["/v3/**"]

[[rule]]
name = "mail-send"
action = "review"
label = "Outbound client message"
host = ["mail.test"]
method = ["POST"]
path = ["/v3/mail/send"]
window = "2h"
summary = "Email"

[[rule]]
name = "plain-read"
action = "automatic"
host = ["plain.test"]
method = ["GET"]
"#;

/// A network namespace kept alive by a sleeping process.
struct Netns {
    holder: Child,
}

impl Netns {
    fn new() -> Netns {
        let holder = Command::new(require_tool("unshare"))
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Netns { holder };
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let path = ns.path();
        for _ in 0..200 {
            match std::fs::read_link(&path) {
                Ok(link) if link != own => break,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        assert_ne!(
            std::fs::read_link(&path).unwrap_or_default(),
            own,
            "could not create a network namespace: this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), as ./test.sh and CI run it"
        );
        let out = ns.run(&["ip", "link", "set", "lo", "up"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net={}", self.path().display()),
            "--".into(),
        ]
    }

    /// Runs a command inside the namespace.
    fn run(&self, cmd: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(require_tool("nsenter"))
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(require_tool(cmd[0]))
            .args(&cmd[1..])
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// A listening socket on 127.0.0.1 inside the namespace: bound by a
    /// thread that enters it, so the rest of the test stays where it is.
    fn bind(&self) -> std::net::TcpListener {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns with a namespace file descriptor this thread
            // owns; it moves only this short-lived thread.
            let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap()
    }

    /// curl as the agent: another uid, an empty environment (no proxy
    /// variables), the airlock CA as its only root.
    fn agent_curl(&self, ca: &Path, args: &[&str]) -> Output {
        let mut cmd = vec![
            "setpriv",
            "--reuid",
            AGENT_UID,
            "--regid",
            AGENT_UID,
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cacert",
        ];
        let ca = ca.display().to_string();
        cmd.push(&ca);
        cmd.extend(args);
        self.run(&cmd, &[])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_proxy_variables_is_held_passed_and_refused_without_sni() {
    let ns = Netns::new();
    let pki = Pki::new();
    let tls_up = upstream_on(ns.bind(), Some(&pki)).await;
    let plain_up = upstream_on(ns.bind(), None).await;
    let (port, plain_port) = (tls_up.port(), plain_up.port());
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &pki,
        RULES,
        "transparent_listen = \"[::]:3130\"\n",
        "",
    );
    let enter = ns.enter();
    let wrapper: Vec<&str> = enter.iter().map(String::as_str).collect();
    let bin = Binary::launch_through(&wrapper, dir.path(), &[], "run", &[]);
    assert!(bin.logged("transparent interception listening"));
    // The CA where the agent's uid can read it.
    let public = tempfile::Builder::new().tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(
            dir.path().join("certs/ca.pem"),
            public.path().join("ca.pem"),
        )
        .unwrap();
        std::fs::set_permissions(
            public.path().join("ca.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let ca = public.path().join("ca.pem");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/transparent/redirect.sh");
    let (proxy_port, review_port) = (
        bin.proxy_addr.port().to_string(),
        bin.review_addr.port().to_string(),
    );
    let out = ns.run(
        &["sh", script.to_str().unwrap()],
        &[
            ("AIRLOCK_UID", "0"),
            ("TRANSPARENT_PORT", "3130"),
            ("PROXY_PORT", &proxy_port),
            ("REVIEW_PORT", &review_port),
        ],
    );
    assert!(
        out.status.success(),
        "redirect.sh: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let resolve = format!("mail.test:{port}:127.0.0.1");

    // Held: a reviewed POST, though the agent never named a proxy.
    let out = ns.agent_curl(
        &ca,
        &[
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-d",
            "{\"to\":\"client@example.com\"}",
            &format!("https://mail.test:{port}/v3/mail/send"),
        ],
    );
    let text = stdout(&out);
    assert!(
        text.ends_with("\n403"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("status_url"), "the held answer: {text}");
    assert_eq!(tls_up.count(), 0, "nothing sent while held");

    // Passed: an automatic GET reaches the upstream, by its name.
    let out = ns.agent_curl(
        &ca,
        &[
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
            &format!("https://mail.test:{port}/v3/stats"),
        ],
    );
    assert!(stdout(&out).ends_with("\n200"), "{}", stdout(&out));
    let seen = tls_up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v3/stats");
    assert_eq!(seen[0].sni.as_deref(), Some("mail.test"));

    // Over IPv6 (the dual-stack listener takes both): the same.
    let out = ns.agent_curl(
        &ca,
        &[
            "--resolve",
            &format!("mail.test:{port}:[::1]"),
            "-w",
            "\n%{http_code}",
            &format!("https://mail.test:{port}/v3/v6"),
        ],
    );
    assert!(
        stdout(&out).ends_with("\n200"),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tls_up.requests()[1].path, "/v3/v6");

    // Plain HTTP goes by its Host header, on the original port.
    let out = ns.agent_curl(
        &ca,
        &[
            "--resolve",
            &format!("plain.test:{plain_port}:127.0.0.1"),
            "-w",
            "\n%{http_code}",
            &format!("http://plain.test:{plain_port}/hello"),
        ],
    );
    assert!(stdout(&out).ends_with("\n200"), "{}", stdout(&out));
    assert_eq!(plain_up.count(), 1);
    assert_eq!(
        plain_up.requests()[0].headers["host"],
        format!("plain.test:{plain_port}")
    );

    // TLS without a server name (an IP address): refused, nothing sent.
    let out = ns.agent_curl(
        &ca,
        &["--insecure", &format!("https://127.0.0.1:{port}/v3/stats")],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(tls_up.count(), 2);
    assert!(bin.logged("TLS without a server name"));

    // Straight to the transparent port, from the exempt uid: not a
    // redirect, so a loop if served; closed.
    let out = ns.run(
        &[
            "curl",
            "--silent",
            "--max-time",
            "5",
            "http://127.0.0.1:3130/",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(bin.logged("a connection to airlock's own listener"));
    assert_eq!(plain_up.count(), 1);
    assert_eq!(tls_up.count(), 2);
}
