//! The operator binary as a separate process (P4, P5), so its memory and start-up are its own.
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::rss_kib;
use crate::support::fake_gateway::FakeGateway;
use crate::support::testbed;

pub struct OperatorProcess {
    child: Child,
    pub pid: u32,
    pub spawned: Instant,
    /// Every log line with the time it arrived.
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl OperatorProcess {
    /// Runs `<bin> run` against the fake gateway and the test bed, logging to `log`.
    pub async fn spawn(bin: &Path, fake: &FakeGateway, args: &[&str], log: &Path) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--gateway-url")
            .arg(&fake.url)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env("KUBECONFIG", testbed::kubeconfig_path())
            .env("ROUTERO_ADMIN_KEY", &fake.admin_key)
            .env_remove("ROUTERO_WATCH_NAMESPACES")
            .env_remove("ROUTERO_WATCH_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("spawn the operator binary");
        let pid = child.id().expect("operator pid");
        let stderr = child.stderr.take().expect("operator stderr");
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let mut file = tokio::fs::File::create(log)
            .await
            .expect("operator log file");
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = file.write_all(format!("{line}\n").as_bytes()).await;
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), line));
            }
        });
        Self {
            child,
            pid,
            spawned,
            lines,
        }
    }

    /// When the first log line containing `needle` arrived.
    pub fn line_at(&self, needle: &str) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    pub fn first_line_at(&self) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
            .map(|(t, _)| *t)
    }

    /// Log lines at WARN or ERROR.
    pub fn problems(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, l)| l.contains("WARN") || l.contains("ERROR"))
            .count()
    }

    /// (VmRSS, VmHWM) in KiB; panics if the process has exited.
    pub fn rss(&mut self) -> (u64, u64) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited: {status}");
        }
        rss_kib(self.pid).expect("read /proc/<pid>/status")
    }

    /// Open sockets (TCP connections to the API server and the gateway, and listeners).
    pub fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .filter(|target| target.to_string_lossy().starts_with("socket:"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
