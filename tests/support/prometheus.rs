//! A real Prometheus (Debian's `prometheus` package, installed by scripts/tools.sh) scraping a test's operator every
//! second, queried through its HTTP API.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::testbed::wait_for;
use super::tools::tool;

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub url: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` on `targets` every second, and waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir =
            std::env::temp_dir().join(format!("routero-prometheus-{}", super::testbed::suffix()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: routero-operator\n    \
             metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("prometheus.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        wait_for("prometheus ready", Duration::from_secs(30), || async {
            let r = p.http.get(format!("{}/-/ready", p.url)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        p
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let reply = self
            .http
            .get(format!("{}{path}", self.url))
            .query(params)
            .send()
            .await
            .expect("prometheus answers");
        let body: Value = reply.json().await.expect("prometheus JSON");
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api("/api/v1/query", &[("query", expr.to_owned())])
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// A range query's result matrix over the last `seconds`, at `step` seconds.
    pub async fn query_range(&self, expr: &str, seconds: u64, step: u64) -> Vec<Value> {
        let end = jiff::Timestamp::now().as_second();
        let start = end - seconds as i64;
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", expr.to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", step.to_string()),
                ],
            )
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The series Prometheus holds for a metric name.
    pub async fn series(&self, name: &str) -> Vec<Value> {
        let data = self
            .api(
                "/api/v1/series",
                &[("match[]", format!("{{__name__=\"{name}\"}}"))],
            )
            .await;
        data.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
