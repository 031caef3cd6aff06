//! The S3 client both the server's jobs and the audience side build: the standard AWS chain
//! for credentials, region and endpoint, addressed path-style when an endpoint is given
//! (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`: an S3-compatible store).

/// An S3 client from the standard chain, in `default_region` when the chain names none.
pub async fn client(default_region: &str) -> aws_sdk_s3::Client {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(aws_config::Region::new(default_region.to_string()));
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .load()
        .await;
    // S3-compatible stores are mostly addressed by path, not by bucket host name.
    let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom)
            .build(),
    )
}

/// `key` read as a folder: as it is when empty or ending in `/`, else with a `/` added, so
/// `imports/2026` lists `imports/2026/…` and not `imports/2026-old/…`.
pub fn folder(key: &str) -> String {
    if key.is_empty() || key.ends_with('/') {
        key.to_string()
    } else {
        format!("{key}/")
    }
}

/// Every page of the objects under `prefix` in `bucket` (`.send()` reads them in turn).
pub fn listing(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> aws_sdk_s3::operation::list_objects_v2::paginator::ListObjectsV2Paginator {
    client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
}
