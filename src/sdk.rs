//! Everything that touches `aws-sdk-pinpoint` types: building clients, and converting the
//! SDK's segment types to and from the shared `model` (the one place that knows both).

use aws_sdk_pinpoint::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_pinpoint::Client;

/// A client for a Pinpoint-compatible endpoint with static credentials.
///
/// `retries` is the SDK's own retry budget (attempts, including the first); the reconciler
/// passes 1 for CreateSegment, whose outcome it must check itself before any retry.
pub fn endpoint_client(
    endpoint: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
    retries: u32,
) -> Client {
    let conf = aws_sdk_pinpoint::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "segmentctl",
        ))
        .retry_config(retry_config(retries))
        .build();
    Client::from_conf(conf)
}

fn retry_config(attempts: u32) -> aws_sdk_pinpoint::config::retry::RetryConfig {
    use aws_sdk_pinpoint::config::retry::RetryConfig;
    if attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard().with_max_attempts(attempts)
    }
}
