//! The external tools of the chart and Argo CD tests: helm, lua5.4 and kubernetes-validate. They are looked up in
//! `$ROUTERO_TOOLS/bin` (default /var/tmp/routero-tools/bin), then on PATH; when missing, scripts/tools.sh
//! installs them (it is idempotent and serialises parallel callers with a lock).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

use super::testbed::repo_dir;

fn tools_bin() -> PathBuf {
    let base = std::env::var_os("ROUTERO_TOOLS").unwrap_or_else(|| "/var/tmp/routero-tools".into());
    PathBuf::from(base).join("bin")
}

fn find(name: &str) -> Option<PathBuf> {
    let local = tools_bin().join(name);
    if local.is_file() {
        return Some(local);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The path of `name`, installing the tools first when it is missing.
pub fn tool(name: &str) -> PathBuf {
    static INSTALL: Once = Once::new();
    if let Some(p) = find(name) {
        return p;
    }
    INSTALL.call_once(|| {
        let status = Command::new(repo_dir().join("scripts/tools.sh"))
            .status()
            .expect("run scripts/tools.sh");
        assert!(status.success(), "scripts/tools.sh failed: {status}");
    });
    find(name).unwrap_or_else(|| panic!("{name} is missing after scripts/tools.sh"))
}

/// What a command printed and whether it succeeded.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `args` in the repository, feeding `stdin`.
pub fn run(program: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    // A writer thread, so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
