//! `segmentctl.yaml`: where the live segments are, who owns them, and the safety settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifests::manifest::{self, ManifestError};

/// Where the reconciler finds the Pinpoint Segment API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TargetSpec", into = "TargetSpec")]
pub enum Target {
    /// The embedded default: `segmentctl serve` in-process over this SQLite file.
    Local { path: Option<PathBuf> },
    /// Any Pinpoint-compatible server (credentials from the standard AWS chain).
    Endpoint { url: String, region: Option<String> },
    /// Amazon Pinpoint itself (region and profile default to the AWS environment).
    Aws {
        region: Option<String>,
        profile: Option<String>,
    },
    /// A Customer Profiles domain, for `SegmentDefinition` manifests: Amazon Connect
    /// Customer Profiles, or any compatible server at `endpoint` (`segmentctl serve`).
    CustomerProfiles(ProfilesTarget),
}

/// A Customer Profiles domain: the manifests name no domain, so one folder can be applied
/// to a staging and a production domain, as a namespace is a kube context's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesTarget {
    pub domain: String,
    /// A Customer Profiles-compatible server; none: Amazon Connect Customer Profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl ProfilesTarget {
    /// The domain the embedded default holds `SegmentDefinition` manifests in.
    pub const EMBEDDED_DOMAIN: &'static str = "segmentctl";
}

/// `target:` as written: exactly one of `local`, `endpoint` or `aws`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<LocalSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<EndpointSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws: Option<AwsSpec>,
    #[serde(
        default,
        rename = "customerProfiles",
        skip_serializing_if = "Option::is_none"
    )]
    customer_profiles: Option<ProfilesTarget>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
}

impl TryFrom<TargetSpec> for Target {
    type Error = String;
    fn try_from(t: TargetSpec) -> Result<Self, String> {
        match (t.local, t.endpoint, t.aws, t.customer_profiles) {
            (Some(l), None, None, None) => Ok(Target::Local { path: l.path }),
            (None, Some(e), None, None) => match url_problem(&e.url) {
                Some(why) => Err(format!("endpoint.url: {why}")),
                None => Ok(Target::Endpoint {
                    url: e.url,
                    region: e.region,
                }),
            },
            (None, None, Some(a), None) => Ok(Target::Aws {
                region: a.region,
                profile: a.profile,
            }),
            (None, None, None, Some(p)) => {
                match crate::model::profiles::validate::name("domain", &p.domain).first() {
                    Some(v) => Err(format!("customerProfiles.{}: {}", v.path, v.message)),
                    None => match p.endpoint.as_deref().and_then(url_problem) {
                        Some(why) => Err(format!("customerProfiles.endpoint: {why}")),
                        None => Ok(Target::CustomerProfiles(p)),
                    },
                }
            }
            (None, None, None, None) => Ok(Target::default()),
            _ => Err("give exactly one of local, endpoint, aws or customerProfiles".into()),
        }
    }
}

/// What is wrong with `url` as an API endpoint, if anything: it is `http(s)://HOST[:PORT]`,
/// with a path at most. User info (`user:password@`) is refused rather than sent or dropped:
/// requests are signed with SigV4 from the AWS credentials, and the SDK signs a URL that
/// carries it for a host the server does not see (every request then fails as a bad
/// signature). The URL is shown without its user info.
pub fn url_problem(url: &str) -> Option<String> {
    let shown = || crate::text::safe(&crate::text::redact_url(url)).into_owned();
    // An `@` anywhere is refused, before the URL is parsed: a password holding `/`, `?` or
    // `#` ends the authority early for a parser, which would then see no user info.
    if url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('@'))
    {
        return Some(format!(
            "{:?} carries user info (`user:…@`), which is not sent: requests are signed with the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a role); remove it",
            shown()
        ));
    }
    if url.contains('#') {
        return Some(format!("{:?}: an endpoint URL takes no fragment", shown()));
    }
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return Some(format!(
            "{:?} is not a URL such as https://pinpoint.internal:4566",
            shown()
        ));
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Some(format!(
            "{:?}: expected an http:// or https:// URL such as https://pinpoint.internal:4566",
            shown()
        ));
    }
    match uri.authority() {
        None => Some(format!("{:?} names no host", shown())),
        Some(_) if uri.query().is_some() => Some(format!(
            "{:?}: an endpoint URL takes no query string",
            shown()
        )),
        Some(_) => None,
    }
}

impl From<Target> for TargetSpec {
    fn from(t: Target) -> Self {
        match t {
            Target::Local { path } => TargetSpec {
                local: Some(LocalSpec { path }),
                ..Default::default()
            },
            Target::Endpoint { url, region } => TargetSpec {
                endpoint: Some(EndpointSpec { url, region }),
                ..Default::default()
            },
            Target::Aws { region, profile } => TargetSpec {
                aws: Some(AwsSpec { region, profile }),
                ..Default::default()
            },
            Target::CustomerProfiles(p) => TargetSpec {
                customer_profiles: Some(p),
                ..Default::default()
            },
        }
    }
}

impl Default for Target {
    fn default() -> Self {
        Target::Local { path: None }
    }
}

impl Target {
    /// `local:PATH`, `local`, `endpoint:URL`, `aws` or `customer-profiles:DOMAIN`, as
    /// `--target` takes it. `customer-profiles:DOMAIN` names Amazon Connect Customer
    /// Profiles; [`Target::overridden_by`] keeps a configured endpoint, region and profile.
    pub fn parse_flag(text: &str) -> Result<Self, String> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        match kind {
            "customer-profiles" => match crate::model::profiles::validate::name("DOMAIN", rest).first() {
                None => Ok(Target::CustomerProfiles(ProfilesTarget {
                    domain: rest.to_string(),
                    endpoint: None,
                    region: None,
                    profile: None,
                })),
                Some(v) => Err(format!("--target customer-profiles:DOMAIN: {}", v.message)),
            },
            "local" => Ok(Target::Local {
                path: (!rest.is_empty()).then(|| PathBuf::from(rest)),
            }),
            // Its URL is checked with the settings ([`Config::problem`]): an error here would
            // be printed after the flag's value, user info and all.
            "endpoint" if !rest.is_empty() => Ok(Target::Endpoint {
                url: rest.to_string(),
                region: None,
            }),
            "aws" if rest.is_empty() => Ok(Target::Aws {
                region: None,
                profile: None,
            }),
            _ => Err(format!(
                "unknown target {text:?}; expected local[:PATH], endpoint:URL, aws or customer-profiles:DOMAIN"
            )),
        }
    }

    /// `self` (the configured target) with `flag` (`--target`) over it: another domain of
    /// the configured Customer Profiles target keeps its endpoint, region and profile, as
    /// `kubectl --namespace` keeps the context; any other flag replaces the target.
    pub fn overridden_by(&self, flag: &Target) -> Target {
        match (self, flag) {
            (Target::CustomerProfiles(cfg), Target::CustomerProfiles(f)) => {
                Target::CustomerProfiles(ProfilesTarget {
                    domain: f.domain.clone(),
                    ..cfg.clone()
                })
            }
            _ => flag.clone(),
        }
    }
}

/// Client-side request rates, per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// CreateSegment / UpdateSegment / DeleteSegment (Pinpoint's quota: 25/s).
    #[serde(default = "default_write_rate")]
    pub segment_writes: f64,
    /// Everything else (Pinpoint's quota: 300/s).
    #[serde(default = "default_read_rate")]
    pub reads: f64,
}

fn default_write_rate() -> f64 {
    25.0
}
fn default_read_rate() -> f64 {
    300.0
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            segment_writes: default_write_rate(),
            reads: default_read_rate(),
        }
    }
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// `--config FILE`.
    Flag(PathBuf),
    /// Found by [`Config::discover`]: in the manifest folder, a parent up to the
    /// repository's root, or the current folder.
    Found(PathBuf),
    /// No file: the defaults, and the embedded local target.
    #[default]
    Defaults,
}

impl Origin {
    /// The file, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Origin::Flag(p) | Origin::Found(p) => Some(p),
            Origin::Defaults => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub target: Target,
    /// Goes into the ownership tag, so two installations never claim each other's segments.
    /// Required for any target but the embedded local one ([`Config::owner`] reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Delete managed segments whose manifest is gone.
    #[serde(default)]
    pub prune: bool,
    /// Steps applied at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// A plan that would delete more than this share of an application's managed segments
    /// blocks those deletions.
    #[serde(default = "default_max_delete_percent")]
    pub max_delete_percent: f64,
    /// The daemon observes and reports but does not apply.
    #[serde(default)]
    pub suspend: bool,
    /// Warn when a segment's audience changes by more than this share.
    #[serde(default = "default_audience_warn")]
    pub audience_change_warn_percent: f64,
    /// Where this configuration was read from.
    #[serde(skip)]
    pub origin: Origin,
}

/// The owner on the embedded local target when none is set.
pub const LOCAL_OWNER: &str = "segmentctl";

/// The name of the configuration file.
pub const FILE: &str = manifest::CONFIG_FILE;
fn default_concurrency() -> usize {
    8
}
fn default_max_delete_percent() -> f64 {
    50.0
}
fn default_audience_warn() -> f64 {
    25.0
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: Target::default(),
            owner: None,
            prune: false,
            concurrency: default_concurrency(),
            rate_limits: RateLimits::default(),
            max_delete_percent: default_max_delete_percent(),
            suspend: false,
            audience_change_warn_percent: default_audience_warn(),
            origin: Origin::Defaults,
        }
    }
}

impl Config {
    /// Finds the configuration for the manifest folder `dir`: `--config FILE` when given;
    /// else `segmentctl.yaml` in `dir`, then in each parent folder up to the repository's
    /// root (the folder holding `.git`), then in the current folder; else none.
    pub fn discover(dir: &Path, explicit: Option<&Path>) -> Origin {
        if let Some(f) = explicit {
            return Origin::Flag(f.to_path_buf());
        }
        let start = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        // One manifest file: discovered from the folder it is in.
        let start = match start.parent() {
            Some(parent) if start.is_file() => parent.to_path_buf(),
            _ => start,
        };
        let in_repo = start.ancestors().any(|a| a.join(".git").exists());
        for folder in start.ancestors() {
            let candidate = folder.join(FILE);
            if candidate.is_file() {
                return Origin::Found(shown_path(&candidate));
            }
            if !in_repo || folder.join(".git").exists() {
                break;
            }
        }
        match std::env::current_dir() {
            Ok(cwd) if cwd.join(FILE).is_file() => Origin::Found(PathBuf::from(FILE)),
            _ => Origin::Defaults,
        }
    }

    /// Reads the configuration [`Config::discover`] finds for `dir`, or the defaults.
    pub fn load(dir: &Path, file: Option<&Path>) -> Result<Self, Vec<ManifestError>> {
        let origin = Self::discover(dir, file);
        let Some(path) = origin.file() else {
            return Ok(Self::default());
        };
        let shown = path.display().to_string();
        let text = crate::manifests::folder::read_regular(
            path,
            crate::manifests::folder::MAX_CONFIG_BYTES,
        )
        .map_err(|why| why.to_string())
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                "the file is not UTF-8 text; the configuration is UTF-8 YAML".to_string()
            })
        })
        .map_err(|why| {
            vec![ManifestError {
                file: shown.clone(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read the configuration file: {why}"),
            }]
        })?;
        let mut cfg: Config = manifest::parse_all(&shown, &text)?;
        cfg.check(&shown, &text)?;
        cfg.origin = origin;
        Ok(cfg)
    }

    /// The owner: as configured, or [`LOCAL_OWNER`] when none is set.
    pub fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(LOCAL_OWNER)
    }

    /// Why these settings (the configuration with the command line's overrides) must not be
    /// acted on, if they must not: a target URL that cannot be used
    /// ([`url_problem`]; `--target endpoint:URL` is checked here, the file's as it loads), or
    /// no owner off the embedded target ([`Config::owner_problem`]).
    pub fn problem(&self) -> Option<String> {
        let url = match &self.target {
            Target::Endpoint { url, .. } => Some(("--target endpoint:URL", url)),
            Target::CustomerProfiles(p) => p
                .endpoint
                .as_ref()
                .map(|u| ("customerProfiles.endpoint", u)),
            _ => None,
        };
        url.and_then(|(field, url)| url_problem(url).map(|why| format!("{field}: {why}")))
            .or_else(|| self.owner_problem())
    }

    /// Why this configuration must not be acted on, if it must not: off the embedded local
    /// target the owner has to be said, or two repositories that both leave it unset would
    /// manage each other's segments.
    pub fn owner_problem(&self) -> Option<String> {
        match (&self.target, &self.owner) {
            (Target::Local { .. }, _) | (_, Some(_)) => None,
            (_, None) => Some(format!(
                "no owner is set for {}: off the embedded local target segmentctl must know which installation it is, or two repositories would manage each other's segments; set `owner: <team-or-repository>` in {} or pass --owner",
                match &self.target {
                    Target::Endpoint { url, .. } => format!("the endpoint {}", crate::text::redact_url(url)),
                    Target::CustomerProfiles(p) => format!("the Customer Profiles domain {}", p.domain),
                    _ => "Amazon Pinpoint".to_string(),
                },
                self.origin.file().map(|f| f.display().to_string()).unwrap_or_else(|| FILE.to_string())
            )),
        }
    }

    /// Every value that reads but is out of range, each located in `text` (file `file`).
    fn check(&self, file: &str, text: &str) -> Result<(), Vec<ManifestError>> {
        let mut problems: Vec<(&str, String)> = Vec::new();
        if let Some(msg) = self.owner.as_deref().and_then(manifest::name_problem) {
            problems.push(("owner", msg));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            problems.push((
                "concurrency",
                format!("must be 1 to 64, found {}", self.concurrency),
            ));
        }
        for (path, rate) in [
            (
                "rate_limits.segment_writes",
                self.rate_limits.segment_writes,
            ),
            ("rate_limits.reads", self.rate_limits.reads),
        ] {
            if rate.is_nan() || rate <= 0.0 {
                problems.push((path, "rates must be greater than 0".into()));
            }
        }
        if !(0.0..=100.0).contains(&self.max_delete_percent) {
            problems.push(("max_delete_percent", "must be 0 to 100".into()));
        }
        if !(self.audience_change_warn_percent.is_finite()
            && self.audience_change_warn_percent >= 0.0)
        {
            problems.push((
                "audience_change_warn_percent",
                "must be a number of percent, 0 or more".into(),
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let source = manifest::SourceText::of_text(file, text);
        let mut errors: Vec<ManifestError> = problems
            .into_iter()
            .map(|(path, message)| manifest::located(file, &source, 0, path, message))
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }

    /// The local target's database file. A relative path is taken from the configuration
    /// file's folder; with no configuration file, the default is under the manifest folder.
    pub fn local_path(&self, dir: &Path) -> Option<PathBuf> {
        let base = match self.origin.file().and_then(Path::parent) {
            Some(p) => p.to_path_buf(),
            // A single manifest file: the folder it is in.
            None if dir.is_file() => dir.parent().unwrap_or(Path::new(".")).to_path_buf(),
            None => dir.to_path_buf(),
        };
        match &self.target {
            Target::Local { path } => Some(match path {
                Some(p) if p.is_absolute() => p.clone(),
                Some(p) => base.join(p),
                None => base.join(".segmentctl").join("pinpoint.db"),
            }),
            _ => None,
        }
    }
}

/// A path as the user should see it: relative to the current folder when it is under it.
fn shown_path(p: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => p
            .strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf()),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_in_the_config_is_located_with_a_suggestion() {
        let err = manifest::parse_one::<Config>("segmentctl.yaml", "owner: team-a\nprnue: true\n")
            .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("unknown field \"prnue\""), "{err}");
        assert!(err.to_string().ends_with("(did you mean prune?)"), "{err}");
    }

    /// The errors of `text` as a configuration file: `line:column: path` each.
    fn load_errors(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        let file = dir.path().join(FILE);
        Config::load(dir.path(), Some(&file))
            .unwrap_err()
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.path))
            .collect()
    }

    #[test]
    fn every_mistake_in_the_config_is_reported_at_its_field() {
        assert_eq!(
            load_errors(
                "owner: team-a\nprune: maybe\nconcurency: 4\nmax_delete_percent: lots\nrate_limits:\n  segment_write: 5\n"
            ),
            ["2:1: prune", "3:1: concurency", "4:1: max_delete_percent", "6:3: rate_limits.segment_write"]
        );
        // Values that read but are out of range, each at its own line.
        assert_eq!(
            load_errors(
                "owner: \"Team A!\"\nconcurrency: 0\nmax_delete_percent: 500\nrate_limits:\n  reads: 0\naudience_change_warn_percent: -5\n"
            ),
            [
                "1:1: owner",
                "2:1: concurrency",
                "3:1: max_delete_percent",
                "5:3: rate_limits.reads",
                "6:1: audience_change_warn_percent"
            ]
        );
    }

    #[test]
    fn an_endpoint_url_is_checked_and_shown_without_its_user_info() {
        assert_eq!(url_problem("https://pinpoint.internal:4566"), None);
        assert_eq!(url_problem("http://127.0.0.1:4566/base"), None);
        let why = url_problem("http://bob:hunter2@127.0.0.1:9").unwrap();
        assert!(
            why.starts_with("\"http://127.0.0.1:9\" carries user info"),
            "{why}"
        );
        assert!(url_problem("ftp://x")
            .unwrap()
            .contains("expected an http:// or https:// URL"));
        assert!(url_problem("pinpoint.internal").is_some());
        assert!(url_problem("http://x/?a=b")
            .unwrap()
            .contains("no query string"));
        assert_eq!(url_problem("http://[::1]:4566/"), None);
        assert_eq!(url_problem("HTTP://localhost:4566/prefix"), None);
        // A password holding `#`, `/` or `?` ends a parser's authority early: still refused,
        // and never shown.
        for url in [
            "http://bob:p#ss@127.0.0.1:9",
            "http://bob:p/ss@h",
            "http://bob:p?ss@h",
        ] {
            let why = url_problem(url).unwrap();
            assert!(why.contains("carries user info"), "{why}");
            assert!(!why.contains("bob") && !why.contains("ss@"), "{why}");
        }
        assert!(url_problem("http://h/#x").unwrap().contains("no fragment"));
        let errors = load_errors(
            "owner: a\ntarget:\n  endpoint: {url: 'http://bob:hunter2@x:1', region: us-east-1}\n",
        );
        assert_eq!(errors, ["2:1: target"]);
        // The flag's URL is checked with the settings, where no parser quotes it whole.
        let cfg = Config {
            owner: Some("a".into()),
            target: Target::parse_flag("endpoint:http://bob:hunter2@x:1").unwrap(),
            ..Default::default()
        };
        let problem = cfg.problem().unwrap();
        assert!(
            problem.starts_with("--target endpoint:URL: \"http://x:1\" carries"),
            "{problem}"
        );
        assert!(!problem.contains("hunter2"));
    }

    #[test]
    fn targets_parse_from_the_file_and_the_flag() {
        let cfg: Config = manifest::parse_one(
            "c",
            "target:\n  endpoint: {url: 'http://x:1', region: eu-west-1}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.target,
            Target::Endpoint {
                url: "http://x:1".into(),
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(
            Target::parse_flag("local:/tmp/x.db").unwrap(),
            Target::Local {
                path: Some("/tmp/x.db".into())
            }
        );
        assert_eq!(
            Target::parse_flag("aws").unwrap(),
            Target::Aws {
                region: None,
                profile: None
            }
        );
        assert!(Target::parse_flag("gcp").is_err());
        assert_eq!(
            Config::default().local_path(Path::new("m")),
            Some(PathBuf::from("m/.segmentctl/pinpoint.db"))
        );
    }
}
