//! Integration tests: one binary, the real `aws-sdk-pinpoint` client against `segmentctl
//! serve` started in-process on a loopback port. No mocks of the API.

mod pg;
mod pgbouncer;
mod python;
mod util;

mod audience_duckdb;
mod audience_plan;
mod auth;
mod cli;
mod compat_boto3;
mod connect_campaigns;
mod consistency;
mod convert;
mod daemon;
mod data_sources;
mod estimate;
mod faults;
mod fuzz_corpus;
mod hardening;
mod hostile;
mod imported_segments;
mod imports;
mod manifests;
mod pg_ops;
mod pg_tls;
mod profiles_api;
mod profiles_duckdb;
mod profiles_hostile;
mod profiles_target;
mod properties;
mod reconcile;
mod replicas;
mod seams;
mod server_api;
mod server_crash;
mod server_errors;
mod spoof;
mod target;
