//! The real `fhirgate` binary as a child process, for tests that must see what an operator
//! sees: start-up, signals, `kill -9`, log lines.
//!
//! The binary's path comes from the calling test crate (`env!("CARGO_BIN_EXE_fhirgate")`),
//! because only the package that owns a binary gets that variable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How many log lines are kept per process (oldest dropped first).
const LOG_LINES_KEPT: usize = 20_000;

/// A running `fhirgate serve` (or any other subcommand that announces
/// `listening on http://ADDR`).
pub struct FhirgateProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of the main listener.
    pub address: String,
    logs: Arc<LogBook>,
    /// Keeps the config file alive as long as the process.
    config_dir: Option<tempfile_dir::TempDir>,
}

#[derive(Default)]
struct LogBook {
    lines: Mutex<Vec<String>>,
    grew: Notify,
}

impl FhirgateProcess {
    /// Write `config_yaml` to a fresh folder and run `BIN serve --config FILE` with JSON logs.
    /// Use `listen: 127.0.0.1:0` in the config; the announced address is parsed from the log.
    pub async fn serve(bin: &str, config_yaml: &str) -> anyhow::Result<Self> {
        Self::serve_with_env(bin, config_yaml, &[]).await
    }

    pub async fn serve_with_env(
        bin: &str,
        config_yaml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile_dir::TempDir::new()?;
        let path = dir.path().join("fhirgate.yaml");
        std::fs::write(&path, config_yaml)?;
        let args = vec![
            "--log-format".to_owned(),
            "json".to_owned(),
            "serve".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        let mut process = Self::spawn(bin, &args, env).await?;
        process.config_dir = Some(dir);
        Ok(process)
    }

    /// Run `BIN ARGS...` and wait (up to 60 s) for it to log `listening on http://ADDR`.
    pub async fn spawn(bin: &str, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(args)
            .env("FHIRGATE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {bin}"))?;
        let logs = Arc::new(LogBook::default());
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = Arc::clone(&logs);
            // Drained for the whole life of the process so it never blocks on a full pipe.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut kept) = logs.lines.lock() {
                        if kept.len() >= LOG_LINES_KEPT {
                            kept.remove(0);
                        }
                        kept.push(line);
                    }
                    logs.grew.notify_waiters();
                }
                logs.grew.notify_waiters();
            });
        }
        let mut process = FhirgateProcess {
            child,
            address: String::new(),
            logs,
            config_dir: None,
        };
        let line = process
            .wait_for_log("listening on http://", Duration::from_secs(60))
            .await?;
        process.address = parse_address(&line).ok_or_else(|| anyhow!("no address in {line}"))?;
        Ok(process)
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("process already exited"))
    }

    /// The folder holding the config file (`serve`/`serve_with_env` only).
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config_dir
            .as_ref()
            .map(|d| d.path().join("fhirgate.yaml"))
    }

    /// Send a signal by name (`TERM`, `HUP`, `KILL`, `INT`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid()?.to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed");
        }
        Ok(())
    }

    /// `kill -9` and reap: the process gets no chance to flush anything.
    pub async fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        self.child.wait().await?;
        Ok(())
    }

    /// Wait for the process to exit on its own (after `TERM`, say).
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(limit, self.child.wait())
            .await
            .context("process did not exit in time")??)
    }

    /// Every log line so far (stdout and stderr interleaved).
    pub fn logs(&self) -> Vec<String> {
        self.logs
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Wait until a log line containing `needle` appears (also one logged before the call).
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        let search = async {
            loop {
                let grew = self.logs.grew.notified();
                if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                    return line;
                }
                grew.await;
            }
        };
        tokio::time::timeout(limit, search).await.with_context(|| {
            format!(
                "no log line containing {needle:?} within {limit:?}; last lines:\n{}",
                self.logs()
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    /// Resident memory of the process in bytes (`VmRSS` from `/proc`).
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        resident_bytes(self.pid()?)
    }
}

/// `VmRSS` of any process, in bytes.
pub fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad VmRSS line"))?
        .parse()?;
    Ok(kib * 1024)
}

fn parse_address(line: &str) -> Option<String> {
    let at = line.find("listening on http://")?;
    let rest = line.get(at + "listening on ".len()..)?;
    let end = rest
        .char_indices()
        .skip("http://".len())
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ':'))
        .map_or(rest.len(), |(i, _)| i);
    rest.get(..end).map(str::to_owned)
}

/// A small self-deleting temporary folder, so testkit needs no `tempfile` dependency at run
/// time of non-test code paths.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!(
                "fhirgate-test-{}-{}",
                std::process::id(),
                uuid_like()
            ));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn address_is_cut_at_the_first_non_address_character() {
        assert_eq!(
            parse_address(r#"{"msg":"listening on http://127.0.0.1:4242/fhir"}"#).as_deref(),
            Some("http://127.0.0.1:4242")
        );
    }
}
