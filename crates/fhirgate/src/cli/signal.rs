//! Process signals shared by the long-running subcommands (`serve`, `demo`, `auth serve`,
//! `store serve`).

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Every SIGHUP, as a stream of wake-ups (`recv` resolves once per signal, bursts coalesced).
/// On platforms without SIGHUP, or when it cannot be registered, it never resolves.
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::sync::Mutex<tokio::signal::unix::Signal>>,
}

impl Hangups {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(signal) => Some(tokio::sync::Mutex::new(signal)),
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGHUP: reload by signal is off");
                    None
                }
            };
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    pub async fn recv(&self) {
        #[cfg(unix)]
        if let Some(signal) = &self.signal
            && signal.lock().await.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}
