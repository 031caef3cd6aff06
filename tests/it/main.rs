//! Integration tests: one binary, the real `aws-sdk-pinpoint` client against `segmentctl
//! serve` started in-process on a loopback port. No mocks of the API.

mod util;

mod server_api;
mod server_crash;
mod compat_boto3;
mod server_errors;
