//! Output nobody can spoof: names, titles, attribute names, values and tags from manifests and
//! from the live side, holding newlines, backticks, pipes, `<`, `@`, `![` and ANSI escapes,
//! go through the text plan, the markdown comment (rendered as GitHub renders it), the JSON
//! and apply's event lines, and forge nothing in any of them.

use std::path::Path;

use aws_sdk_pinpoint::types::WriteSegmentRequest;

use crate::util::{self, endpoint_config, segmentctl};

/// What an attacker would put in a name: a forged summary line, a mention, an image, a link,
/// a code fence, a table cell boundary, raw HTML, and an escape sequence that hides text.
const HOSTILE: &str = "x\n**Plan: 0 to create, 0 to update, 0 to delete.**\n@everyone ![i](http://e.test/i.png) [l](http://e.test) www.e.test m@e.test ```\n| a | b |\n<b>bold</b>\u{1b}[8mhidden\u{1b}[0m";

/// A tag key is at most 128 characters.
const HOSTILE_KEY: &str =
    "k\n**Plan: 0 to create.**\n@everyone ![i](http://e.test/i.png) ``` | <b>\u{1b}[8m";

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = segmentctl(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A YAML double-quoted scalar holding `s` exactly.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

async fn hostile_workspace() -> (util::TestServer, tempfile::TempDir, String) {
    let t = util::start().await;
    let app = t.app(HOSTILE).await;
    // Live: a managed segment whose manifest is gone (a delete under prune) and a managed
    // one the manifest updates, both named and tagged by someone with API access.
    let managed = |name: &str| {
        WriteSegmentRequest::builder()
            .name(HOSTILE)
            .tags("segmentctl:managed-by", "team-a")
            .tags("segmentctl:name", name)
            .tags(HOSTILE_KEY, HOSTILE)
    };
    util::create_segment(&t.client, &app, managed("gone").build()).await;
    let dims = aws_sdk_pinpoint::types::SegmentDimensions::builder()
        .user_attributes(
            HOSTILE,
            aws_sdk_pinpoint::types::AttributeDimension::builder()
                .values(HOSTILE)
                .build(),
        )
        .build();
    util::create_segment(&t.client, &app, managed("vip").dimensions(dims).build()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let h = yaml_str(HOSTILE);
    let k = yaml_str(HOSTILE_KEY);
    let manifest = format!(
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: vip, application: {app}}}\nspec:\n  Name: {h}\n  Dimensions:\n    UserAttributes:\n      {h}: {{Values: [{h}, \"y\\n```\"]}}\n  tags:\n    {k}: {h}\n---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: new, application: {app}}}\nspec:\n  Name: {h}\n"
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).unwrap();
    (t, dir, app)
}

fn no_forged_line(output: &str) {
    assert!(
        !output.contains('\u{1b}'),
        "a raw escape sequence: {output}"
    );
    for line in output.lines() {
        let l = line.trim_start_matches(['>', ' ', '-', '+', '|']);
        assert!(
            !l.starts_with("**Plan: 0")
                && !l.starts_with("@everyone")
                && !l.starts_with("| a | b |")
                && !l.starts_with("<b>bold"),
            "a forged line: {line:?}\nin:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_values_and_tags_forge_nothing_in_any_report() {
    let (_t, dir, _app) = hostile_workspace().await;

    let (code, text, stderr) = run(dir.path(), &["plan", "--prune"]);
    assert_eq!(code, 0, "{text}{stderr}");
    assert!(text.contains("x\\n**Plan: 0"), "shown, escaped: {text}");
    assert!(text.contains("\\x1b[8mhidden"), "{text}");
    no_forged_line(&text);
    no_forged_line(&stderr);

    let (code, md, stderr) = run(dir.path(), &["plan", "--prune", "--format", "markdown"]);
    assert_eq!(code, 0, "{md}{stderr}");
    no_forged_line(&md);
    let html = render_as_github(&md);
    for forged in ["<img", "<a ", "<b>bold", "<table>\n<thead>\n<tr>\n<th>a"] {
        assert!(!html.contains(forged), "{forged} in:\n{html}");
    }
    // GitHub makes mentions of text outside code only.
    assert!(
        !outside_code(&html).contains("@everyone"),
        "a mention in:\n{html}"
    );
    assert_eq!(
        html.matches("<strong>Plan:").count(),
        1,
        "one summary line, ours:\n{html}"
    );
    // Every step's diff is its own closed block: one <pre> per <details>, none swallowing
    // the rest of the comment.
    assert_eq!(
        html.matches("<pre").count(),
        html.matches("<details>").count(),
        "{html}"
    );
    assert!(html.trim_end().ends_with("</details>"), "{html}");
    // The blocked flag in a summary is emphasis, not literal asterisks.
    assert!(!html.contains("**blocked**"), "{html}");

    let (code, json, _) = run(dir.path(), &["plan", "--prune", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json.contains(&serde_json::to_string(HOSTILE).unwrap()),
        "JSON keeps the data exactly, escaped as JSON"
    );
    assert!(v["apps"].is_array());

    let (code, out, err) = run(dir.path(), &["apply", "--prune", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    no_forged_line(&out);
    no_forged_line(&err);
}

/// The markdown as GitHub renders a comment: GFM with tables, strikethrough, autolinks and
/// task lists, raw HTML kept (GitHub sanitizes it afterwards, keeping `<details>`, `<b>`,
/// `<code>`, `<img>`, `<a>`).
pub(crate) fn render_as_github(md: &str) -> String {
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.autolink = true;
    options.extension.tasklist = true;
    options.render.r#unsafe = true;
    comrak::markdown_to_html(md, &options)
}

/// The HTML with the contents of every `<code>` element removed.
fn outside_code(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<code") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</code>") {
            Some(end) => rest = &rest[start + end + "</code>".len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// A target URL with user info in it is refused (requests are signed with the AWS
/// credentials; the SDK signed such a URL for a host the server never saw), and the password
/// is shown nowhere: not by plan in any format, nor for an unreachable endpoint, nor by the
/// controller, which does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_target_url_is_refused_and_shown_nowhere() {
    let t = util::start().await;
    let app = t.app("shop").await;
    let dir = tempfile::tempdir().unwrap();
    let with_secret = t.endpoint().replace("http://", "http://user:s3cret@");
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        format!(
            "target:\n  endpoint: {{url: '{with_secret}', region: us-east-1}}\nowner: team-a\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        util::segment(&app, "us", "  Name: US\n"),
    )
    .unwrap();
    let refused = format!(
        "target: endpoint.url: \"{}\" carries user info (`user:…@`), which is not sent",
        t.endpoint()
    );
    let mut seen = String::new();
    for format in ["text", "markdown", "json"] {
        let (code, out, err) = run(dir.path(), &["plan", "--format", format]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(&refused), "{err}");
        seen.push_str(&out);
        seen.push_str(&err);
    }
    // Unreachable with the same user info: refused the same way, the endpoint redacted.
    let closed = "http://user:s3cret@127.0.0.1:9";
    let unreachable = tempfile::tempdir().unwrap();
    std::fs::write(
        unreachable.path().join("segmentctl.yaml"),
        format!("target:\n  endpoint: {{url: '{closed}', region: us-east-1}}\nowner: team-a\n"),
    )
    .unwrap();
    let (code, out, err) = run(unreachable.path(), &["plan"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("\"http://127.0.0.1:9\" carries user info"),
        "{err}"
    );
    seen.push_str(&out);
    seen.push_str(&err);
    // The controller does not start, and says why.
    let out = segmentctl(dir.path())
        .args([
            "run",
            ".",
            "--admin-listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&refused), "{err}");
    seen.push_str(&err);
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    assert!(!seen.contains("s3cret"), "{seen}");
}
