//! `fhirgate auth ...` subcommands: administer the embedded authorization server's store
//! (users, clients, the picker's patients, launch contexts, keys) and mint tokens; `serve`
//! runs the server alone (`auth/serve.rs`).

mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use fhirgate_authserver::{
    AuthConfig, AuthServer, ClientKind, MintRequest, NewClient, NewUser, PatientEntry,
};

/// Where the store lives and under which public URL the server runs.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Data directory holding `auth.sqlite`.
    #[arg(
        long,
        global = true,
        env = "FHIRGATE_DATA_DIR",
        default_value = "fhirgate-data"
    )]
    data_dir: PathBuf,
    /// Public base URL of fhirgate; the issuer is `{url}/auth`, the FHIR base `{url}/fhir`.
    #[arg(
        long,
        global = true,
        env = "FHIRGATE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    public_url: String,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<AuthServer> {
        let base = self.public_url.trim_end_matches('/');
        let cfg = AuthConfig::new(
            AuthConfig::db_path_in(&self.data_dir),
            format!("{base}/auth"),
            format!("{base}/fhir"),
        );
        AuthServer::open(cfg).with_context(|| {
            format!(
                "opening the authorization store in {}",
                self.data_dir.display()
            )
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Users who sign in on the login page.
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Registered client applications.
    Client {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Patients offered by the patient picker.
    Patient {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// Create an EHR launch context and print its launch value (and URL).
    Launch {
        #[command(flatten)]
        store: StoreArgs,
        /// Patient in context.
        #[arg(long)]
        patient: String,
        /// Encounter in context.
        #[arg(long)]
        encounter: Option<String>,
        /// Restrict the launch to this client (and print its launch URL).
        #[arg(long)]
        client: Option<String>,
    },
    /// Print an access token signed by the embedded server's key.
    Token {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        client: String,
        /// Space-separated scopes; must be within the client's allowed scopes.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        patient: Option<String>,
        /// Username whose fhirUser goes into the token.
        #[arg(long)]
        user: Option<String>,
        /// Lifetime, e.g. `10m` (at most 1h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        expires_in: std::time::Duration,
        /// Print the whole token response as JSON instead of the bare token.
        #[arg(long)]
        json: bool,
    },
    /// Run the authorization server alone (scaled-out layout; one instance per data dir).
    Serve(serve::ServeArgs),
    /// Add a new signing key; old keys stay published until their tokens have expired.
    RotateKeys {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    Add {
        username: String,
        /// Password (at least 8 characters).
        #[arg(long, env = "FHIRGATE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Linked FHIR resource: `Patient/ID` (sees only that record) or `Practitioner/ID`.
        #[arg(long)]
        fhir_user: Option<String>,
    },
    List,
    Remove {
        username: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    Add {
        /// Client id (generated when omitted).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        /// public | confidential-symmetric | confidential-asymmetric
        #[arg(long, default_value = "public", value_parser = parse_kind)]
        kind: ClientKind,
        /// Registered redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Allowed scopes, space-separated (empty: anything a user launch may ask for).
        #[arg(long, default_value = "")]
        scope: String,
        /// Inline JWKS file for private_key_jwt.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// JWKS URL for private_key_jwt.
        #[arg(long)]
        jwks_url: Option<String>,
        /// The app's launch URL (for EHR launch).
        #[arg(long)]
        launch_url: Option<String>,
        /// Secret for a symmetric client (generated when omitted).
        #[arg(long, env = "FHIRGATE_CLIENT_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    List,
    Remove {
        client_id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PatientCommand {
    Add {
        id: String,
        /// Display name shown in the picker.
        name: String,
        #[arg(long)]
        birth_date: Option<String>,
    },
    List {
        /// Only names or ids containing this text.
        #[arg(default_value = "")]
        query: String,
    },
}

fn parse_kind(s: &str) -> Result<ClientKind, String> {
    ClientKind::parse(s).ok_or_else(|| {
        "expected public, confidential-symmetric or confidential-asymmetric".to_string()
    })
}

pub fn run(command: AuthCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuthCommand::Serve(args) => serve::run(args),
        AuthCommand::User { store, command } => user(&store.open()?, command),
        AuthCommand::Client { store, command } => client(&store.open()?, command),
        AuthCommand::Patient { store, command } => patient(&store.open()?, command),
        AuthCommand::Launch {
            store,
            patient,
            encounter,
            client,
        } => {
            let server = store.open()?;
            let created = server.create_launch(
                Some(&patient),
                encounter.as_deref(),
                client.as_deref(),
                true,
            )?;
            println!("launch: {}", created.launch);
            println!("iss:    {}", created.iss);
            match created.launch_url {
                Some(url) => println!("url:    {url}"),
                None => println!(
                    "url:    {{app launch URL}}?iss={}&launch={}",
                    created.iss, created.launch
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Token {
            store,
            client,
            scope,
            patient,
            user,
            expires_in,
            json,
        } => {
            let minted = store.open()?.mint_token(MintRequest {
                client_id: client,
                scope,
                patient,
                user,
                expires_in,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&minted)?);
            } else {
                println!("{}", minted.access_token);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::RotateKeys { store } => {
            let kid = store.open()?.rotate_keys()?;
            println!("new signing key: {kid} (older keys stay published for 24h)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn user(server: &AuthServer, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            username,
            password,
            name,
            fhir_user,
        } => {
            let u = server.add_user(NewUser {
                username,
                password,
                display_name: name,
                fhir_user,
            })?;
            println!("added user {} ({})", u.username, u.id);
        }
        UserCommand::List => {
            for u in server.list_users()? {
                println!(
                    "{}\t{}\t{}",
                    u.username,
                    u.fhir_user.as_deref().unwrap_or("-"),
                    u.display_name
                );
            }
        }
        UserCommand::Remove { username } => {
            if !server.remove_user(&username)? {
                bail!("no user named {username}");
            }
            println!("removed user {username}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn client(server: &AuthServer, command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Add {
            id,
            name,
            kind,
            redirect_uris,
            scope,
            jwks_file,
            jwks_url,
            launch_url,
            secret,
        } => {
            let jwks = match jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some(serde_json::from_str(&text).context("the JWKS file is not JSON")?)
                }
                None => None,
            };
            let created = server.add_client(NewClient {
                client_id: id,
                name,
                kind,
                redirect_uris,
                allowed_scopes: scope.split_whitespace().map(str::to_string).collect(),
                jwks,
                jwks_url,
                launch_url,
                client_secret: secret,
            })?;
            println!("client_id:     {}", created.client_id);
            if let Some(s) = created.client_secret {
                println!("client_secret: {s}   (shown once; only a hash is stored)");
            }
        }
        ClientCommand::List => {
            for c in server.list_clients()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.client_id,
                    c.kind.as_str(),
                    c.name,
                    c.redirect_uris.join(","),
                    c.allowed_scopes.join(" ")
                );
            }
        }
        ClientCommand::Remove { client_id } => {
            if !server.remove_client(&client_id)? {
                bail!("no client {client_id}");
            }
            println!("removed client {client_id} and revoked its grants");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn patient(server: &AuthServer, command: PatientCommand) -> anyhow::Result<ExitCode> {
    match command {
        PatientCommand::Add {
            id,
            name,
            birth_date,
        } => {
            server.upsert_patients(&[PatientEntry {
                id: id.clone(),
                display_name: name,
                birth_date,
            }])?;
            println!("patient {id} is in the picker");
        }
        PatientCommand::List { query } => {
            for p in server.search_patients(&query, 1000)? {
                println!(
                    "{}\t{}\t{}",
                    p.id,
                    p.display_name,
                    p.birth_date.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
