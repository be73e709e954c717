//! Helpers: config from YAML, request inputs, and a throwaway `redis-server`.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhirgate_ratelimit::{
    ManualClock, RateLimitConfig, RateLimiter, RawRateLimitConfig, RequestKeyInput,
};

pub fn config(yaml: &str) -> RateLimitConfig {
    let raw: RawRateLimitConfig = serde_yaml_ng::from_str(yaml).expect("yaml parses");
    raw.validate().expect("config validates")
}

pub fn local_limiter(yaml: &str) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new();
    // Start away from zero so "fresh" and "at time zero" are not the same thing.
    clock.set(Duration::from_secs(1_000));
    (
        RateLimiter::with_clock(config(yaml), Arc::new(clock.clone())),
        clock,
    )
}

pub fn read(client: &str) -> RequestKeyInput<'_> {
    RequestKeyInput {
        client_id: Some(client),
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        interaction: "read",
        resource_type: Some("Observation"),
        path: "/Observation/1",
        ..RequestKeyInput::default()
    }
}

pub fn header(verdict: &fhirgate_ratelimit::Verdict, name: &str) -> Option<String> {
    verdict
        .headers()
        .into_iter()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_str().unwrap().to_owned())
}

/// A `redis-server` child on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` (test skipped) when `redis-server` is not installed, except in CI where a
    /// missing server must fail the test.
    pub fn start() -> Option<Self> {
        let port = free_port();
        let mut server = Self { port, child: None };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::env::var("CI").as_deref() != Ok("true") =>
            {
                eprintln!("redis-server not installed; skipping (CI=true makes this a failure)");
                None
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze the server (SIGSTOP): connections stay open but nothing answers, like a hung
    /// or partitioned Redis.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Start again on the same port (the data is gone, as after a real restart without
    /// persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restarts");
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
