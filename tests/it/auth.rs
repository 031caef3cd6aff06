//! SigV4 checks: a request altered after it was signed is refused, as are wrong or missing
//! credentials; and the controller never prints a secret.

use aws_sdk_pinpoint::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_pinpoint::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_pinpoint::error::ProvideErrorMetadata;
use aws_smithy_types::body::SdkBody;

use crate::util::{self, named};

/// What to alter in a request after the SDK signed it.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Body,
    Path,
    Query,
    DropDateHeader,
}

impl Intercept for Tamper {
    fn name(&self) -> &'static str {
        "tamper"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_pinpoint::error::BoxError> {
        let req = ctx.request_mut();
        match self {
            Tamper::Body => {
                let body = req.body().bytes().unwrap_or_default().to_vec();
                let text = String::from_utf8(body)?.replace("honest", "forged");
                *req.body_mut() = SdkBody::from(text);
            }
            Tamper::Path => {
                let uri = req.uri().to_string();
                req.set_uri(uri.replacen("/segments", "/campaigns", 1))?;
            }
            Tamper::Query => {
                let uri = req.uri().to_string();
                req.set_uri(uri.replace("page-size=5", "page-size=6"))?;
            }
            Tamper::DropDateHeader => {
                req.headers_mut().remove("x-amz-date");
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_request_altered_after_signing_is_forbidden() {
    let t = util::start().await;
    let app = t.app("auth").await;
    // Each of these succeeds untampered (checked first), and is refused tampered.
    t.client
        .create_segment()
        .application_id(&app)
        .write_segment_request(named("honest"))
        .send()
        .await
        .unwrap();
    t.client
        .get_segments()
        .application_id(&app)
        .page_size("5")
        .send()
        .await
        .unwrap();

    for tamper in [
        Tamper::Body,
        Tamper::Path,
        Tamper::Query,
        Tamper::DropDateHeader,
    ] {
        let err = match tamper {
            Tamper::Body => t
                .client
                .create_segment()
                .application_id(&app)
                .write_segment_request(named("honest"))
                .customize()
                .interceptor(tamper)
                .send()
                .await
                .map(|_| ())
                .unwrap_err()
                .code()
                .map(str::to_string),
            _ => t
                .client
                .get_segments()
                .application_id(&app)
                .page_size("5")
                .customize()
                .interceptor(tamper)
                .send()
                .await
                .map(|_| ())
                .unwrap_err()
                .code()
                .map(str::to_string),
        };
        assert_eq!(err.as_deref(), Some("ForbiddenException"), "{tamper:?}");
    }
    // Nothing forged got in.
    let names: Vec<String> = util::segments_of(&t.client, &app)
        .await
        .into_iter()
        .filter_map(|s| s.name)
        .collect();
    assert_eq!(names, ["honest"]);
}

#[tokio::test]
async fn a_signature_for_another_region_or_service_is_forbidden() {
    let t = util::start().await;
    let other_region = segmentctl::targets::pinpoint::convert::endpoint_client(
        &t.endpoint(),
        "eu-west-1",
        util::KEY,
        util::SECRET,
        1,
    );
    let err = other_region
        .get_apps()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_forbidden_exception());
    assert!(
        err.meta()
            .message()
            .unwrap()
            .contains("this server serves 'us-east-1'"),
        "{err:?}"
    );
}

#[test]
fn the_controller_never_prints_a_secret_even_at_trace_level() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(util::start());
    let app = rt.block_on(t.app("secrets"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        format!(
            "target:\n  endpoint: {{url: '{}', region: us-east-1}}\nowner: segmentctl\n",
            t.endpoint()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        format!("apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: a, application: {app}}}\nspec: {{Name: a}}\n"),
    )
    .unwrap();
    let run = |secret: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args(args)
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", util::KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("SEGMENTCTL_LOG", "trace")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, all) = run(util::SECRET, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.len() > 1000, "trace logging produced output");
    assert!(
        !all.contains(util::SECRET),
        "the secret appears in the output"
    );

    // Refused credentials: one line saying what to check; nothing changed; no secret.
    let wrong = "wrong-secret-should-never-appear";
    std::fs::write(
        dir.path().join("b.yaml"),
        format!("apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: b, application: {app}}}\nspec: {{Name: b}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["apply", ".", "--auto-approve"])
        .current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", util::KEY)
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    // The target named first (no report is made to name it), then one line of error.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("Target: the endpoint http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("error: the target refused the request (ForbiddenException: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID), the region, and the endpoint"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong));
    let live = rt
        .block_on(segmentctl::targets::pinpoint::Pinpoint::list_segments(
            &segmentctl::targets::pinpoint::SdkPinpoint::new(
                segmentctl::targets::pinpoint::pacing::Api::new(
                    t.client.clone(),
                    Default::default(),
                ),
            ),
            &app,
        ))
        .unwrap();
    assert_eq!(live.len(), 1, "the refused run changed nothing");
}
