//! Connecting to the target: the embedded local server, any Pinpoint-compatible endpoint,
//! or Amazon Pinpoint, always through `aws-sdk-pinpoint`.

use std::path::Path;

use aws_config::BehaviorVersion;
use aws_sdk_pinpoint::config::retry::RetryConfig;

use crate::api::{Api, CallError};
use crate::config::{Config, Target};
use crate::pinpoint::SdkPinpoint;
use crate::server::{self, Auth, Credentials, RunningServer, ServerConfig};

/// An open connection; for the local target it owns the in-process server.
pub struct Connection {
    pub pinpoint: SdkPinpoint,
    /// Where requests go, for messages.
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
}

/// Opens the target named by `config` (relative local paths are taken from `dir`).
pub async fn connect(config: &Config, dir: &Path) -> Result<Connection, ConnectError> {
    match &config.target {
        Target::Local { .. } => {
            let path = config
                .local_path(dir)
                .unwrap_or_else(|| dir.join(".segmentctl/pinpoint.db"));
            // Fresh credentials for this process only: the server listens on loopback, and
            // the requests are still signed and checked exactly as against Pinpoint.
            let key = format!(
                "AKLOCAL{}",
                uuid::Uuid::new_v4().simple().to_string()[..13].to_uppercase()
            );
            let secret = uuid::Uuid::new_v4().simple().to_string();
            let cfg = ServerConfig::local(
                path.clone(),
                Auth::SigV4(Credentials::single(&key, &secret)),
            );
            let srv = server::start(cfg)
                .await
                .map_err(|source| ConnectError::Local {
                    path: path.display().to_string(),
                    source,
                })?;
            let endpoint = srv.endpoint();
            let client = crate::sdk::endpoint_client(&endpoint, "us-east-1", &key, &secret, 1);
            Ok(Connection {
                pinpoint: SdkPinpoint::new(Api::with_concurrency(
                    client,
                    config.rate_limits,
                    config.concurrency,
                )),
                endpoint: format!("{endpoint} (embedded, {})", path.display()),
                server: Some(srv),
            })
        }
        Target::Endpoint { url, region } => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(url)
                .retry_config(RetryConfig::disabled());
            if let Some(r) = region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            let conf = loader.load().await;
            if conf.region().is_none() {
                return Err(ConnectError::NoRegion { kind: "endpoint" });
            }
            Ok(Connection {
                pinpoint: SdkPinpoint::new(Api::with_concurrency(
                    aws_sdk_pinpoint::Client::new(&conf),
                    config.rate_limits,
                    config.concurrency,
                )),
                endpoint: url.clone(),
                server: None,
            })
        }
        Target::Aws { region, profile } => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(RetryConfig::disabled());
            if let Some(r) = region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            if let Some(p) = profile {
                loader = loader.profile_name(p);
            }
            let conf = loader.load().await;
            let Some(r) = conf.region().map(|r| r.to_string()) else {
                return Err(ConnectError::NoRegion { kind: "aws" });
            };
            Ok(Connection {
                pinpoint: SdkPinpoint::new(Api::with_concurrency(
                    aws_sdk_pinpoint::Client::new(&conf),
                    config.rate_limits,
                    config.concurrency,
                )),
                endpoint: format!("https://pinpoint.{r}.amazonaws.com"),
                server: None,
            })
        }
    }
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
