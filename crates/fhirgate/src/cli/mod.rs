//! One module per subcommand. Each exposes its clap args and a `run` returning an exit code.

pub mod app;
pub mod audit;
pub mod auth;
pub mod data;
pub mod demo;
mod log_lines;
pub mod logging;
pub mod serve;
pub mod signal;
pub mod store;
