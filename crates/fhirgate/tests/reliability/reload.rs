//! Item 4, live reload: SIGHUP and `POST /admin/reload` under constant load. No request may
//! fail, the new configuration must take effect, state must survive (rate-limit counters,
//! the audit hash chain), and a bad file must leave the running configuration in place.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fhirgate_testkit::process::FhirgateProcess;

use crate::{BIN, Upstream, config, count_logs};

/// The two configurations differ visibly in which browser origin is allowed. The rate-limit
/// rule is the same in both, so its counters must survive every reload: it allows ten
/// requests per hour carrying `X-Probe`, and only those.
fn variant(upstream: &Upstream, origin: &str, audit: &Path, admin: bool) -> String {
    let admin = if admin {
        "metrics:\n  admin_listen: 127.0.0.1:0\n"
    } else {
        ""
    };
    config(
        upstream,
        &format!(
            "cors:\n  allowed_origins: [\"{origin}\"]\nrate_limit:\n  rules:\n    - name: probe\n      key: header:X-Probe\n      per_hour: 10\naudit:\n  path: {}\n{admin}",
            audit.display()
        ),
    )
}

/// Replace the file in one step, as editors and config management do.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Clients sending GETs back to back until stopped; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, url) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                            Ok(r) => {
                                eprintln!("failed: {}", r.status());
                                false
                            }
                            Err(e) => {
                                eprintln!("failed: {e}");
                                false
                            }
                        };
                        let counter = if outcome { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The origin the gateway currently allows, seen from a fresh request.
async fn allowed_origin(client: &reqwest::Client, url: &str, origin: &str) -> bool {
    let response = client
        .get(url)
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("access-control-allow-origin")
        .is_some_and(|v| v == origin)
}

async fn probe(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .header("X-Probe", "p")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Wait until `needle` has been logged `n` times.
async fn wait_logged(gateway: &FhirgateProcess, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_logs(gateway, needle) < n {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {n} times:\n{}",
            gateway.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const A: &str = "https://a.example";
const B: &str = "https://b.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_under_load_without_a_failed_request() {
    let upstream = Upstream::start().await;
    let audit = tempfile::tempdir().unwrap();
    let gateway = FhirgateProcess::serve(BIN, &variant(&upstream, A, audit.path(), false))
        .await
        .unwrap();
    let file = gateway.config_path().unwrap();
    let url = format!("{}/fhir/Patient/1", gateway.address);
    let client = reqwest::Client::new();
    assert!(allowed_origin(&client, &url, A).await);
    for _ in 0..5 {
        assert_eq!(probe(&client, &url).await, 200);
    }

    let load = Load::start(url.clone(), 4);
    for i in 1..=10 {
        let origin = if i % 2 == 1 { B } else { A };
        write(&file, &variant(&upstream, origin, audit.path(), false));
        gateway.signal("HUP").unwrap();
        wait_logged(&gateway, "configuration reloaded", i).await;
        assert!(
            allowed_origin(&client, &url, origin).await,
            "reload {i} did not take effect"
        );
        let other = if origin == A { B } else { A };
        assert!(!allowed_origin(&client, &url, other).await);
    }

    // A file that does not validate: refused with file:line:col, the last good one stays.
    write(
        &file,
        &format!(
            "{}limits:\n  max_body_size: lots\n",
            variant(&upstream, B, audit.path(), false)
        ),
    );
    gateway.signal("HUP").unwrap();
    wait_logged(&gateway, "configuration reload refused", 1).await;
    let refused = gateway
        .logs()
        .into_iter()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(refused.contains("fhirgate.yaml:"), "{refused}");
    assert!(refused.contains("limits.max_body_size"), "{refused}");
    // A change that needs a restart is refused and says so.
    write(
        &file,
        &format!(
            "{}limits:\n  max_connections: 7\n",
            variant(&upstream, B, audit.path(), false)
        ),
    );
    gateway.signal("HUP").unwrap();
    wait_logged(&gateway, "configuration reload refused", 2).await;
    assert!(count_logs(&gateway, "limits cannot change without a restart") >= 1);

    let (ok, failed) = load.finish().await;
    println!("reload under load: {ok} requests succeeded, {failed} failed, 10 reloads");
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load was too light to mean anything: {ok}");
    // The last reload (10, even) allowed A; the refused files changed nothing.
    assert!(allowed_origin(&client, &url, A).await);
    assert!(!allowed_origin(&client, &url, B).await);
    // The rate limiter kept its counters through ten reloads: five more probes are the
    // rest of the ten, the one after is refused.
    for _ in 0..5 {
        assert_eq!(probe(&client, &url).await, 200);
    }
    assert_eq!(probe(&client, &url).await, 429);

    // One writer, one unbroken hash chain.
    let mut gateway = gateway;
    gateway.signal("TERM").unwrap();
    gateway.wait_exit(Duration::from_secs(30)).await.unwrap();
    let verify = std::process::Command::new(BIN)
        .args(["audit", "verify"])
        .arg(audit.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test]
async fn admin_endpoint_reloads_the_file() {
    let upstream = Upstream::start().await;
    let audit = tempfile::tempdir().unwrap();
    let gateway = FhirgateProcess::serve(BIN, &variant(&upstream, A, audit.path(), true))
        .await
        .unwrap();
    let line = gateway
        .wait_for_log("admin listener", Duration::from_secs(10))
        .await
        .unwrap();
    let at = line.find("http://127.0.0.1:").unwrap();
    let admin: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.".contains(*c))
        .collect();
    let file = gateway.config_path().unwrap();
    let url = format!("{}/fhir/Patient/1", gateway.address);
    let client = reqwest::Client::new();
    let reload = format!("{admin}/admin/reload");

    let load = Load::start(url.clone(), 2);
    write(&file, &variant(&upstream, B, audit.path(), true));
    let answer = client.post(&reload).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("configuration reloaded")
    );
    assert!(allowed_origin(&client, &url, B).await);

    // Invalid: 409 with the file position, old configuration still active.
    write(&file, "listen: 127.0.0.1:0\npublic_base_url: nonsense\n");
    let answer = client.post(&reload).send().await.unwrap();
    assert_eq!(answer.status(), 409);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("fhirgate.yaml:") && text.contains("public_base_url"),
        "{text}"
    );
    assert!(allowed_origin(&client, &url, B).await);

    // Only POST reloads; the FHIR listener has no such endpoint.
    assert_eq!(client.get(&reload).send().await.unwrap().status(), 405);
    let public = client
        .post(format!("{}/admin/reload", gateway.address))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);

    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{ok} succeeded");
}
