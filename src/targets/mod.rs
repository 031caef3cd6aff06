//! The target: which Segment API segmentctl acts on (the embedded local server, any
//! Pinpoint-compatible endpoint, or Amazon Pinpoint), named in words every command prints,
//! and connected to through `aws-sdk-pinpoint` once its credentials are known to resolve.
//!
//! This is the seam the planner and the executor see: [`pinpoint`] is the typed interface
//! to the Segment API and its implementations. A second target (Customer Profiles) will be
//! its sibling.

pub mod pacing;
pub mod pinpoint;
pub mod profiles;

use std::path::Path;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_pinpoint::config::retry::RetryConfig;

use crate::manifests::config::{Config, Target};
pub use crate::plan::live::TargetInfo;
use crate::server::{self, Auth, Credentials, RunningServer, ServerConfig};
use crate::targets::pinpoint::pacing::{Api, CallError};
use crate::targets::pinpoint::SdkPinpoint;
use crate::targets::profiles::SdkProfiles;
use crate::text::redact_url;

/// The target record is data the planner carries; making it from the settings reads the
/// environment (`AWS_REGION`, `AWS_PROFILE`), so it is done here, at the target's seam.
impl TargetInfo {
    /// What `cfg` names, for the manifest folder `dir`.
    pub fn of(cfg: &Config, dir: &Path) -> Self {
        let (kind, address, region, profile) = match &cfg.target {
            Target::Local { .. } => (
                "local",
                cfg.local_path(dir)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                None,
                None,
            ),
            Target::Endpoint { url, region } => (
                "endpoint",
                redact_url(url),
                region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty())),
                None,
            ),
            Target::Aws { region, profile } => {
                let region = region.clone().or_else(|| std::env::var("AWS_REGION").ok());
                let address = match &region {
                    Some(r) => format!("https://pinpoint.{r}.amazonaws.com"),
                    None => "Amazon Pinpoint".to_string(),
                };
                let profile = profile
                    .clone()
                    .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
                ("aws", address, region, profile)
            }
            Target::CustomerProfiles(p) => {
                let region = p
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()));
                let address = match (&p.endpoint, &region) {
                    (Some(url), _) => redact_url(url),
                    (None, Some(r)) => format!("https://profile.{r}.amazonaws.com"),
                    (None, None) => "Amazon Connect Customer Profiles".to_string(),
                };
                let profile = p
                    .profile
                    .clone()
                    .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
                ("customer-profiles", address, region, profile)
            }
        };
        Self {
            kind: kind.into(),
            address,
            region,
            profile,
            domain: match &cfg.target {
                Target::CustomerProfiles(p) => Some(p.domain.clone()),
                _ => None,
            },
            account: None,
            owner: cfg.owner().to_string(),
            config: cfg.origin.file().map(|f| f.display().to_string()),
        }
    }
}

/// An open connection; for the local target it owns the in-process server.
pub struct Connection {
    pub pinpoint: SdkPinpoint,
    /// Where requests go, for messages (never with credentials).
    pub endpoint: String,
    pub server: Option<RunningServer>,
}

impl Connection {
    pub async fn close(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot start the embedded Pinpoint server over {path}")]
    Local {
        path: String,
        #[source]
        source: server::ServeError,
    },
    #[error(
        "no AWS region for the target: set target.{kind}.region in segmentctl.yaml, or AWS_REGION"
    )]
    NoRegion { kind: &'static str },
    #[error("{0}")]
    NoCredentials(String),
    /// The target is of the other kind than the folder's manifests.
    #[error("{0}")]
    WrongKind(String),
}

/// How long credentials may take to resolve before segmentctl says there are none.
const CREDENTIALS_WITHIN: Duration = Duration::from_secs(5);

/// Opens the target named by `config` (relative local paths are taken from `dir`).
///
/// Errors: the embedded server cannot start; no region; no credentials resolve within a few
/// seconds (named: which sources were tried, what to set).
pub async fn connect(config: &Config, dir: &Path) -> Result<Connection, ConnectError> {
    connect_for(config, dir, true).await
}

/// As [`connect`]; with `writes` false (a plan, which only reads), the embedded server
/// neither takes its database's lock nor runs jobs, so a plan works beside a running apply
/// or controller on the same folder.
pub async fn connect_for(
    config: &Config,
    dir: &Path,
    writes: bool,
) -> Result<Connection, ConnectError> {
    let (url, region, profile) = match &config.target {
        Target::Local { .. } => return connect_local(config, dir, writes).await,
        Target::Endpoint { url, region } => (Some(url.as_str()), region.clone(), None),
        Target::Aws { region, profile } => (None, region.clone(), profile.clone()),
        Target::CustomerProfiles(p) => {
            return Err(ConnectError::WrongKind(format!(
                "the target is the Customer Profiles domain {}, but the folder holds Pinpoint manifests; name a Pinpoint target (--target local|endpoint:URL|aws)",
                p.domain
            )))
        }
    };
    let kind = if url.is_some() { "endpoint" } else { "aws" };
    let (conf, r) = sdk_config(url, region, profile, kind).await?;
    let endpoint = match url {
        Some(u) => redact_url(u),
        None => format!("https://pinpoint.{r}.amazonaws.com"),
    };
    Ok(Connection {
        pinpoint: SdkPinpoint::new(Api::with_concurrency(
            aws_sdk_pinpoint::Client::new(&conf),
            config.rate_limits,
            config.concurrency,
        )),
        endpoint,
        server: None,
    })
}

/// The SDK's settings for an endpoint (none: AWS), once a region is known and credentials
/// resolve; and the region.
///
/// Errors: no region; a named profile that does not exist; no credentials within a few
/// seconds.
async fn sdk_config(
    url: Option<&str>,
    region: Option<String>,
    profile: Option<String>,
    kind: &'static str,
) -> Result<(aws_config::SdkConfig, String), ConnectError> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
    if let Some(url) = url {
        loader = loader.endpoint_url(url);
    }
    if let Some(r) = &region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &profile {
        loader = loader.profile_name(p);
    }
    let chosen_profile = profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
    if let Some(p) = &chosen_profile {
        if let Some(problem) = missing_profile(p, profile.is_some()) {
            return Err(ConnectError::NoCredentials(problem));
        }
    }
    let conf = loader.load().await;
    let Some(r) = conf.region().map(|r| r.to_string()) else {
        return Err(ConnectError::NoRegion { kind });
    };
    check_credentials(&conf, chosen_profile.as_deref()).await?;
    Ok((conf, r))
}

/// The embedded default's folder (`.segmentctl/`) holds a database, not manifests: a
/// `.gitignore` inside it keeps it out of Git.
fn keep_out_of_git(db: &Path) {
    let Some(folder) = db.parent() else { return };
    let ignore = folder.join(".gitignore");
    if std::fs::create_dir_all(folder).is_ok() && !ignore.exists() {
        let _ = std::fs::write(
            &ignore,
            "# segmentctl's embedded database: local state, not manifests.\n*\n",
        );
    }
}

async fn connect_local(
    config: &Config,
    dir: &Path,
    writes: bool,
) -> Result<Connection, ConnectError> {
    let e = start_embedded(config, dir, writes).await?;
    let client = crate::targets::pinpoint::convert::endpoint_client(
        &e.url,
        "us-east-1",
        &e.key,
        &e.secret,
        1,
    );
    Ok(Connection {
        pinpoint: SdkPinpoint::new(Api::with_concurrency(
            client,
            config.rate_limits,
            config.concurrency,
        )),
        endpoint: format!("{} (embedded, {})", e.url, e.path.display()),
        server: Some(e.server),
    })
}

/// The embedded default, started: the server, where it listens, and this process's own
/// credentials for it.
struct Embedded {
    server: RunningServer,
    url: String,
    path: std::path::PathBuf,
    key: String,
    secret: String,
}

async fn start_embedded(
    config: &Config,
    dir: &Path,
    writes: bool,
) -> Result<Embedded, ConnectError> {
    let path = config
        .local_path(dir)
        .unwrap_or_else(|| dir.join(".segmentctl/pinpoint.db"));
    if !path.exists() {
        tracing::debug!(database = %crate::text::safe(&path.display().to_string()), "no database there yet: the embedded server starts a new, empty one");
    }
    if path.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new(".segmentctl")) {
        keep_out_of_git(&path);
    }
    // Fresh credentials for this process only: the server listens on loopback, and the
    // requests are still signed and checked exactly as against Pinpoint.
    let key = format!(
        "AKLOCAL{}",
        uuid::Uuid::new_v4().simple().to_string()[..13].to_uppercase()
    );
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let mut cfg = ServerConfig::local(
        path.clone(),
        Auth::SigV4(Credentials::single(&key, &secret)),
    );
    // Imported segments may name files of the manifests' folder (file:// URLs).
    cfg.import_roots = vec![dir.to_path_buf()];
    cfg.run_jobs = writes;
    let server = server::start(cfg)
        .await
        .map_err(|source| ConnectError::Local {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Embedded {
        url: server.endpoint(),
        server,
        path,
        key,
        secret,
    })
}

/// An open connection to a Customer Profiles domain; for the embedded default it owns the
/// in-process server.
pub struct ProfilesConnection {
    pub profiles: SdkProfiles,
    /// Where requests go, for messages (never with credentials).
    pub endpoint: String,
    pub domain: String,
    /// The embedded default: its domain is created when missing (it is local state).
    pub embedded: bool,
    pub server: Option<RunningServer>,
}

impl ProfilesConnection {
    pub async fn close(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
    }
}

/// Opens the Customer Profiles target `config` names: a `customerProfiles` target, or the
/// embedded default (its domain `segmentctl`).
///
/// Errors: as [`connect`]'s; a Pinpoint target (the folder holds `SegmentDefinition`s).
pub async fn connect_profiles(
    config: &Config,
    dir: &Path,
    writes: bool,
) -> Result<ProfilesConnection, ConnectError> {
    // Both clients on one configuration: the campaigns are the same account's and region's.
    let client = |conf: &aws_config::SdkConfig| {
        let paced = |c| Api::with_concurrency(c, config.rate_limits, config.concurrency);
        let profiles = paced(aws_sdk_customerprofiles::Client::new(conf));
        let mut campaigns = Api::with_concurrency(
            aws_sdk_connectcampaignsv2::Client::new(conf),
            config.rate_limits,
            config.concurrency,
        );
        // One set of counters: the metrics show every call to the target.
        campaigns.counters = profiles.counters.clone();
        SdkProfiles::new(profiles, campaigns)
    };
    match &config.target {
        Target::Local { .. } => {
            let e = start_embedded(config, dir, writes).await?;
            let conf =
                crate::targets::profiles::endpoint_config(&e.url, "us-east-1", &e.key, &e.secret);
            Ok(ProfilesConnection {
                profiles: client(&conf),
                endpoint: format!("{} (embedded, {})", e.url, e.path.display()),
                domain: crate::manifests::config::ProfilesTarget::EMBEDDED_DOMAIN.to_string(),
                embedded: true,
                server: Some(e.server),
            })
        }
        Target::CustomerProfiles(p) => {
            let (conf, r) =
                sdk_config(
                    p.endpoint.as_deref(),
                    p.region.clone(),
                    p.profile.clone(),
                    "customerProfiles",
                )
                .await?;
            let endpoint = match &p.endpoint {
                Some(u) => redact_url(u),
                None => format!("https://profile.{r}.amazonaws.com"),
            };
            Ok(ProfilesConnection {
                profiles: client(&conf),
                endpoint,
                domain: p.domain.clone(),
                embedded: false,
                server: None,
            })
        }
        Target::Endpoint { .. } | Target::Aws { .. } => Err(ConnectError::WrongKind(
            "the folder holds SegmentDefinition manifests, which are applied to a Customer Profiles domain, but the target is a Pinpoint one; set `target: {customerProfiles: {domain: NAME}}` in segmentctl.yaml or pass --target customer-profiles:DOMAIN".into(),
        )),
    }
}

/// The sources the SDK's default chain looks in, in its order, for the message.
fn sources_tried(profile: Option<&str>) -> String {
    let profile = match profile {
        Some(p) => format!("the profile {p:?} in the AWS config and credentials files"),
        None => "the default profile in the AWS config and credentials files".into(),
    };
    format!(
        "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), {profile}, SSO, web identity (AWS_WEB_IDENTITY_TOKEN_FILE), container credentials and instance metadata"
    )
}

/// Resolves credentials once, quickly, so a missing one is one line rather than minutes of
/// retries against instance metadata followed by a network error.
async fn check_credentials(
    conf: &aws_config::SdkConfig,
    profile: Option<&str>,
) -> Result<(), ConnectError> {
    let Some(provider) = conf.credentials_provider() else {
        return Err(ConnectError::NoCredentials(format!(
            "no AWS credentials: none of {} is configured; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            sources_tried(profile)
        )));
    };
    match tokio::time::timeout(CREDENTIALS_WITHIN, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            // The SDK's chain explains itself over several lines; the first says enough.
            let why = crate::text::error_chain(&e);
            let why = why.lines().next().unwrap_or("").trim_end_matches([':', ' ']);
            Err(ConnectError::NoCredentials(format!(
                "no AWS credentials found ({why}): tried {}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
                sources_tried(profile)
            )))
        }
        Err(_) => Err(ConnectError::NoCredentials(format!(
            "no AWS credentials found within {} s: tried {} (instance metadata did not answer); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            CREDENTIALS_WITHIN.as_secs(),
            sources_tried(profile)
        ))),
    }
}

/// Says so when the chosen profile is defined in neither AWS file.
fn missing_profile(profile: &str, from_config: bool) -> Option<String> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let config = file("AWS_CONFIG_FILE", "config");
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let defines = |path: &Option<std::path::PathBuf>, prefixed: bool| -> bool {
        let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return false;
        };
        text.lines().any(|l| {
            let l = l.trim();
            let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
                return false;
            };
            let name = name.trim();
            let name = if prefixed && profile != "default" {
                match name.strip_prefix("profile") {
                    Some(n) if n.starts_with(char::is_whitespace) => n.trim(),
                    _ => return false,
                }
            } else {
                name.strip_prefix("profile ").map(str::trim).unwrap_or(name)
            };
            name == profile
        })
    };
    if defines(&config, true) || defines(&credentials, false) {
        return None;
    }
    let shown = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no home folder)".into())
    };
    Some(format!(
        "the AWS profile {profile:?} (from {}) does not exist: it is defined in neither {} nor {}",
        if from_config {
            "target.aws.profile in segmentctl.yaml"
        } else {
            "AWS_PROFILE"
        },
        shown(&config),
        shown(&credentials)
    ))
}

/// One line saying what is wrong with the target and what to check.
pub fn target_error(e: &CallError, endpoint: &str) -> String {
    if e.is_forbidden() {
        format!(
            "the target refused the request ({}): check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID), the region, and the endpoint {endpoint}",
            e.message
        )
    } else if e.code == "network" {
        format!(
            "cannot reach the Pinpoint API at {endpoint} ({}): check the endpoint URL, the network, and the region",
            e.message
        )
    } else {
        format!("the Pinpoint API at {endpoint} failed: {e}")
    }
}
