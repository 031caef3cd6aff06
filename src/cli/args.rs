//! The arguments: what clap parses, and how raw values become validated ones (durations,
//! pool sizes, probabilities, database strings) before any work starts. Nothing here runs a
//! command; `cli::run` maps these to each command's plain options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use crate::reconcile::pipeline::Overrides;
use crate::server::store::DataSource;
use crate::server::{self, Auth, Credentials, FaultConfig, ServerConfig};

const ENVIRONMENT: &str = "\
Environment:
  SEGMENTCTL_LOG     log filter on standard error, e.g. debug or segmentctl=debug (default info)
  SEGMENTCTL_ADMIN   `status`: the controller's admin address
  NO_COLOR           no colours, even on a terminal (colours are only ever on a terminal)
  GITHUB_SHA, CI_COMMIT_SHA
                     the commit named in plan reports, unless --revision is given
  AWS_PROFILE, AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_PINPOINT, …
                     the standard AWS chain, for the endpoint and aws targets

Exit codes: 0 success or no changes, 1 error (usage errors too), 2 changes present (plan
--detailed-exitcode), 3 blocked steps, 130 interrupted.";

/// `0.1.0 (commit 0123abcd4567)`: the release workflow and the image build pass the commit
/// in `SEGMENTCTL_COMMIT`.
fn version_text() -> String {
    match option_env!("SEGMENTCTL_COMMIT").filter(|c| !c.is_empty()) {
        Some(c) => format!(
            "{} (commit {})",
            env!("CARGO_PKG_VERSION"),
            &c[..c.len().min(12)]
        ),
        None => format!(
            "{} (commit unknown: built without SEGMENTCTL_COMMIT)",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "segmentctl",
    version = version_text(),
    about = "Amazon Pinpoint segments as code",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimits {
    Off,
    Pinpoint,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifests in DIR and report every mistake, located.
    #[command(
        after_help = "Examples:\n  segmentctl validate segments\n  segmentctl validate segments/geo.yaml"
    )]
    Validate(ValidateArgs),
    /// Print the JSON Schema of the manifest format (for editors).
    Schema,
    /// Show what apply would change, as a reviewer reads it.
    #[command(
        after_help = "Examples:\n  segmentctl plan segments\n  segmentctl plan segments --format markdown --detailed-exitcode > plan.md\n  segmentctl plan segments --out plan.json && segmentctl apply plan.json\n  segmentctl plan segments --endpoints endpoints.jsonl.gz --as-of 2026-11-28T00:00:00Z"
    )]
    Plan(PlanArgs),
    /// Make the live segments match the manifests (DIR or one FILE.yaml), or carry out a
    /// saved plan (FILE.json).
    #[command(
        after_help = "Examples:\n  segmentctl apply segments\n  segmentctl apply segments --auto-approve --prune\n  segmentctl apply plan.json --auto-approve\n  segmentctl apply segments --auto-approve --format json | jq -c 'select(.type == \"step\")'"
    )]
    Apply(ApplyArgs),
    /// Write manifests for an application's live segments, and adopt them.
    #[command(
        after_help = "Examples:\n  segmentctl import . --application 0123456789abcdef0123456789abcdef --out segments/shop"
    )]
    Import(ImportArgs),
    /// Run as a controller: watch DIR, resync on an interval, reconcile.
    #[command(
        after_help = "Examples:\n  segmentctl run /manifests --interval 5m --admin-listen 0.0.0.0:9090\n  segmentctl run /git/current --mode observe --log-format json\n  segmentctl run /manifests --shard-from-hostname 3"
    )]
    Run(RunArgs),
    /// Show a running controller's state: per application the last round, drift, blocked
    /// steps and errors, and the recent events.
    #[command(
        after_help = "Examples:\n  segmentctl status\n  kubectl -n segmentctl port-forward segmentctl-0 9090 & segmentctl status --admin http://127.0.0.1:9090"
    )]
    Status(StatusArgs),
    /// Count, per segment, the endpoint records (NDJSON, plain or gzip) that belong to it.
    #[command(
        after_help = "Examples:\n  segmentctl estimate segments --endpoints endpoints.jsonl.gz\n  segmentctl estimate segments --endpoints export.jsonl --as-of 2026-11-28T00:00:00Z --format json"
    )]
    Estimate(EstimateArgs),
    /// Print SQL computing the segments' audiences on Spark, DuckDB or PostgreSQL, with the
    /// evaluator's exact semantics.
    #[command(
        after_help = "The records are read as Pinpoint exports them (NDJSON EndpointResponse objects): Spark from a table or view read with the schema `--schema` prints, DuckDB with read_json over the files, PostgreSQL from a table of one jsonb record per row (DDL by --schema). Runners: examples/engines/.\n\nExamples:\n  segmentctl sql segments --dialect duckdb --files 'export/*.gz' --as-of 2026-11-28T00:00:00Z | duckdb\n  segmentctl sql segments --dialect spark --schema\n  segmentctl sql segments --dialect spark --segment vip-customers --members > vip.sql\n  segmentctl sql segments --dialect postgres --table endpoints | psql -X -q\n\nCustomer Profiles: with --customer-profiles, the segment definitions are read from JSON files (what `aws customer-profiles get-segment-definition` prints, or a list of them) instead of the folder, and the records are profiles (NDJSON Profile objects, as SearchProfiles returns them and a segment snapshot writes them):\n  segmentctl sql --dialect duckdb --customer-profiles gold.json --customer-profiles vip.json --files profiles.jsonl | duckdb"
    )]
    Sql(SqlArgs),
    /// Write a folder's Pinpoint segments as Customer Profiles SegmentDefinition manifests,
    /// and report every mapping that is not exact, located, and why.
    #[command(
        after_help = "Exit status: 0 converted; 1 when a criterion cannot be converted (GPSPoint, a base segment by Id, more than 50 values, …) and --drop-unsupported is not given, or when a definition would break Customer Profiles' rules or be left with an empty group: the report names each, and nothing is written.\n\nExamples:\n  segmentctl convert segments --to customer-profiles --out cp-segments\n  segmentctl convert examples/quickstart --to customer-profiles --out cp-segments --drop-unsupported\n  segmentctl convert segments --to customer-profiles --format markdown > migration.md"
    )]
    Convert(ConvertArgs),
    /// Serve the Pinpoint Segment API (self-hosted, wire-compatible) over SQLite or
    /// PostgreSQL.
    #[command(
        subcommand_negates_reqs = true,
        args_conflicts_with_subcommands = true,
        after_help = "Credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY [read-write|read-only]` per line.\n\nWith PostgreSQL, run any number of replicas on one database behind one Service. Rate limits (--rate-limits pinpoint) are counted by each replica: with N replicas a client may reach N times Pinpoint's quota.\n\nExamples:\n  segmentctl serve --listen 0.0.0.0:4566 --data /var/lib/segmentctl/pinpoint.db --credentials-file /etc/segmentctl/credentials\n  SEGMENTCTL_DATA=postgres://segmentctl:…@db:5432/segmentctl segmentctl serve --listen 0.0.0.0:4566 --credentials-file /etc/segmentctl/credentials\n  segmentctl serve --migrate-only --data postgres://…    # a deploy step\n  segmentctl serve migrate --from pinpoint.db --to postgres://…\n  segmentctl serve --no-auth    # loopback only, for local use"
    )]
    Serve(ServeArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  segmentctl completion bash > /etc/bash_completion.d/segmentctl\n  segmentctl completion zsh > \"${fpath[1]}/_segmentctl\"\n  segmentctl completion fish > ~/.config/fish/completions/segmentctl.fish"
    )]
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual pages (roff), generated from these commands: segmentctl(1) and one
    /// page per command, segmentctl-plan(1) and so on, which segmentctl(1) names.
    #[command(
        after_help = "Examples:\n  segmentctl man --out /usr/local/share/man/man1 && man segmentctl-plan\n  segmentctl man plan | man -l -"
    )]
    Man {
        /// One command's page (`plan` for segmentctl-plan(1)); without it, every page.
        command: Option<String>,
        /// Write each page to its own file in DIR (segmentctl.1, segmentctl-plan.1, …).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The manifest folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Configuration file (default: DIR/segmentctl.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Where to connect and what to own, shared by the reconciler commands.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Configuration file (default: segmentctl.yaml in DIR, else in a parent folder up to the
    /// repository's root, else in the current folder).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override the configured target: local[:PATH], endpoint:URL or aws.
    #[arg(long, value_parser = crate::manifests::config::Target::parse_flag)]
    pub target: Option<crate::manifests::config::Target>,
    /// Override the configured owner (the installation whose segments these are).
    #[arg(long, value_parser = parse_owner)]
    pub owner: Option<String>,
}

impl TargetArgs {
    pub fn overrides(&self, prune: bool) -> Overrides {
        Overrides {
            target: self.target.clone(),
            owner: self.owner.clone(),
            prune,
        }
    }
}

fn parse_owner(text: &str) -> Result<String, String> {
    match crate::manifests::manifest::name_problem(text) {
        None => Ok(text.to_string()),
        Some(p) => Err(p.replace("name", "owner")),
    }
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The manifest folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// text: like `terraform plan`; markdown: the pull-request comment; json: the versioned
    /// plan document (what --out saves).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Also save the plan (JSON) for `segmentctl apply FILE`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes (0 when none, 3 when some are blocked, 1 on error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// The commit the manifests are at, for the report (default: GITHUB_SHA or CI_COMMIT_SHA).
    #[arg(long)]
    pub revision: Option<String>,
    /// Delete managed segments whose manifest is gone.
    #[arg(long)]
    pub prune: bool,
    /// Count each created, updated or deleted segment's audience, before and after, over
    /// these endpoint records (one JSON object per line, Pinpoint's export format; plain or
    /// gzip).
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// With --endpoints: the reference time for recency criteria (ISO-8601), default now.
    #[arg(long, requires = "endpoints", value_name = "TIME")]
    pub as_of: Option<String>,
    /// A Customer Profiles target: count each changed definition's profiles, before and
    /// after, over these profile records (one Profile object per line, as SearchProfiles
    /// returns them; plain or gzip).
    #[arg(long, value_name = "FILE", conflicts_with = "endpoints")]
    pub profiles: Option<PathBuf>,
    /// A Customer Profiles target: plan as `apply --repoint-campaigns` would (a replaced
    /// definition's campaigns re-pointed to its replacement before it is deleted).
    #[arg(long)]
    pub repoint_campaigns: bool,
    /// A Customer Profiles target: plan as `apply --allow-delete-in-use` would.
    #[arg(long)]
    pub allow_delete_in_use: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The manifest folder, or a plan saved with `plan --out`.
    #[arg(default_value = ".")]
    pub source: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Apply without asking (required without a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Delete managed segments whose manifest is gone.
    #[arg(long)]
    pub prune: bool,
    /// Carry out deletions blocked only because a campaign, journey or segment uses them.
    #[arg(long)]
    pub allow_delete_in_use: bool,
    /// A Customer Profiles target: when a definition a campaign in use reads is replaced,
    /// re-point the campaign to the new definition (UpdateCampaignSource) before the old one
    /// is deleted. Never done without this flag.
    #[arg(long)]
    pub repoint_campaigns: bool,
    /// When another applier holds an application's lease, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// The commit the manifests are at, for the report (default: GITHUB_SHA or CI_COMMIT_SHA).
    #[arg(long)]
    pub revision: Option<String>,
    /// text: the plan, a line per finished step, the summary; json: the same as JSON lines
    /// (`{"type":"plan"}`, `{"type":"step"}` per step, `{"type":"summary"}`).
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
}

/// What `plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people: a terminal or a CI log.
    Text,
    /// A pull-request comment, as GitHub and GitLab render it.
    Markdown,
    /// The versioned plan document (the same that --out saves).
    Json,
}

/// What `apply`, `estimate` and `status` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyFormat {
    /// For people: a terminal or a CI log.
    Text,
    /// For programs.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The folder whose segmentctl.yaml names the target and owner.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The same as DIR (the earlier spelling, kept so scripts keep working).
    #[arg(long = "dir", hide = true, value_name = "DIR")]
    pub dir_flag: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The application (project) id to import (a Pinpoint target; a Customer Profiles
    /// target imports its domain's definitions).
    #[arg(long)]
    pub application: Option<String>,
    /// Where to write the manifests.
    #[arg(long, default_value = "imported")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The controller's admin address (its --admin-listen).
    #[arg(
        long,
        default_value = "http://127.0.0.1:9090",
        env = "SEGMENTCTL_ADMIN"
    )]
    pub admin: String,
    /// text for people; json: the controller's status document as it serves it.
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
}

#[derive(Debug, clap::Args)]
pub struct EstimateArgs {
    /// The manifest folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Configuration file (default: DIR/segmentctl.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Endpoint records, one JSON object per line (Pinpoint's export format), plain or gzip.
    #[arg(long)]
    pub endpoints: PathBuf,
    /// The reference time for recency criteria (ISO-8601), default now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// text: a table for people; json: the counts per segment.
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlDialect {
    Spark,
    Duckdb,
    Postgres,
}

/// What `convert` writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvertTo {
    /// Amazon Connect Customer Profiles segment definitions.
    CustomerProfiles,
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The manifest folder (Pinpoint segments).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Configuration file (default: DIR/segmentctl.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What to convert to.
    #[arg(long, value_enum)]
    pub to: ConvertTo,
    /// Write the manifests into this folder (new or empty; one folder per application when
    /// there are several). Without it, only the report is printed.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Drop the criteria that cannot be converted (each is named in the report) instead of
    /// refusing. A dropped criterion changes the audience: in a group of Type ALL it
    /// widens it, in a group of Type ANY it narrows it.
    #[arg(long)]
    pub drop_unsupported: bool,
    /// How the report is printed.
    #[arg(long, value_enum, default_value_t = ConvertReport::Text)]
    pub format: ConvertReport,
    /// Count each segment over these endpoint records (NDJSON, plain or gzip): its endpoints
    /// by the Pinpoint segment, and its profiles (the endpoints gathered by user) by the
    /// converted definition, side by side.
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// The reference time for recency criteria (ISO-8601), default now.
    #[arg(long, requires = "endpoints")]
    pub as_of: Option<String>,
}

/// How `convert` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvertReport {
    /// For people: a terminal or a CI log.
    Text,
    /// The migration's pull request, as GitHub and GitLab render it.
    Markdown,
    /// For programs: the definitions written and every note.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The manifest folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Configuration file (default: DIR/segmentctl.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The engine the SQL is for.
    #[arg(long, value_enum)]
    pub dialect: SqlDialect,
    /// Only this segment (repeatable; default every segment). Base segments are included.
    #[arg(long = "segment", value_name = "NAME")]
    pub segments: Vec<String>,
    /// One row: `records`, then each segment's count (the default).
    #[arg(long, conflicts_with = "members")]
    pub count: bool,
    /// The `Id` of every endpoint (`ProfileId` of every profile) in the one segment named by
    /// --segment.
    #[arg(long)]
    pub members: bool,
    /// Customer Profiles segment definitions instead of the folder's segments: a JSON file
    /// as GetSegmentDefinition answers (`SegmentDefinitionName`, `SegmentGroups`; other
    /// members are ignored), or a list of them, or a YAML file of SegmentDefinition
    /// manifests as `convert` writes them (repeatable). The records are then profiles.
    #[arg(long = "customer-profiles", value_name = "FILE")]
    pub customer_profiles: Vec<PathBuf>,
    /// Print how the records must be read instead: Spark's schema (DDL for
    /// spark.read.schema), DuckDB's view over the files, PostgreSQL's table.
    #[arg(long, conflicts_with_all = ["count", "members"])]
    pub schema: bool,
    /// The reference time for recency criteria (ISO-8601), default now; written into the SQL.
    #[arg(long)]
    pub as_of: Option<String>,
    /// The table or view of records (Spark, PostgreSQL; DuckDB reads --files unless given).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// DuckDB: the NDJSON files (plain or gzip), a path or glob; with --table, what
    /// --schema loads into it [default: endpoints.jsonl, or profiles.jsonl with
    /// --customer-profiles].
    #[arg(long, value_name = "GLOB")]
    pub files: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The manifest folder (for git-sync, the symlink it publishes).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// How often to re-check for drift, e.g. 30s, 5m, 1h (±10 % jitter).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub interval: Duration,
    /// /livez fails once a round has gone this long without finishing a step (a loop that is
    /// stuck, not slow, is restarted by the kubelet), e.g. 15m.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub stuck_after: Duration,
    /// Where /livez, /readyz, /metrics and / (status) are served.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Admin connections served at once; more wait in the backlog (probes and a scraper
    /// need a few).
    #[arg(long, default_value_t = crate::daemon::ADMIN_MAX_CONNECTIONS, value_parser = connections)]
    pub admin_max_connections: usize,
    /// How long an admin connection may take to send a request's headers (idle keep-alive
    /// waits included) before it is closed, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub admin_header_timeout: Duration,
    /// apply: correct drift; observe: only report it.
    #[arg(long, value_enum, default_value_t = crate::daemon::Mode::Apply)]
    pub mode: crate::daemon::Mode,
    /// Delete managed segments whose manifest is gone.
    #[arg(long)]
    pub prune: bool,
    /// Own the applications whose key hashes to I of N.
    #[arg(long, value_parser = crate::daemon::Shard::parse, conflicts_with = "shard_from_hostname")]
    pub shard: Option<crate::daemon::Shard>,
    /// Take I from this StatefulSet pod's name (segmentctl-2 → 2), with N shards.
    #[arg(long, value_name = "N")]
    pub shard_from_hostname: Option<u32>,
}

/// `250ms`, `30s`, `5m`, `1h`.
/// A statement timeout: a duration PostgreSQL's `statement_timeout` takes (in whole
/// milliseconds, at most 2,147,483,647: about 24.8 days).
fn parse_statement_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.as_millis() > i32::MAX as u128 {
        return Err(format!(
            "{text:?} is longer than PostgreSQL's statement_timeout takes (at most 2147483647ms, about 24.8 days)"
        ));
    }
    Ok(d)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("expected a duration such as 30s or 5m, found {text:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("the duration must be positive, found {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    /// Where the data lives: a SQLite file (PATH, ./PATH or sqlite:PATH, created if
    /// missing), or a PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB, or libpq's
    /// keywords `host=… dbname=… user=… password=…`; shared by any number of replicas). A
    /// value holding `=` is read as keywords: a file of such a name is ./NAME. Read from
    /// SEGMENTCTL_DATA when not given, which keeps a password out of the process list.
    #[arg(
        long,
        env = "SEGMENTCTL_DATA",
        hide_env_values = true,
        default_value = "./pinpoint.db",
        value_name = "PATH|postgres://…",
        value_parser = DataSourceParser
    )]
    pub data: DataSource,
    /// Connections to PostgreSQL this server opens at most; a request waits up to 5 s for
    /// one, then gets 503 (retryable). From 4 on, one of them is kept for GetSegment's reads,
    /// which share it (pipelined). Ignored for SQLite.
    #[arg(long, default_value_t = server::store::DEFAULT_POOL, value_parser = pool_size)]
    pub db_pool: usize,
    /// How statements are sent to PostgreSQL: `prepared` (parsed and planned once per
    /// connection) or `unnamed` (parsed each time: for PgBouncer before 1.21 in transaction
    /// mode and other poolers that do not track prepared statements). Ignored for SQLite.
    #[arg(long, value_enum, default_value_t = server::store::pg::Statements::Prepared, env = "SEGMENTCTL_DB_STATEMENTS")]
    pub db_statements: server::store::pg::Statements,
    /// How long one PostgreSQL statement may run before the database cancels it (the
    /// request then fails, and nothing of its transaction is kept), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_statement_timeout)]
    pub db_statement_timeout: Duration,
    /// Apply the database's schema migrations, then exit (a deploy step before the
    /// replicas start; they also migrate at start, under a lock).
    #[arg(long)]
    pub migrate_only: bool,
    /// How long an import or export job stays this server's without renewal; a replica
    /// finding a job's lease run out (its server died) runs it again, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub job_lease: Duration,
    #[command(subcommand)]
    pub action: Option<ServeAction>,
    /// The region the server answers as: signatures must name it, ARNs carry it.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The account id ARNs carry (`arn:aws:mobiletargeting:REGION:ACCOUNT:apps/…`).
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
    /// File of `ACCESS_KEY_ID SECRET_ACCESS_KEY` lines that may sign requests (this, or
    /// --no-auth on a loopback address, is needed to serve).
    #[arg(long, conflicts_with = "no_auth")]
    pub credentials_file: Option<PathBuf>,
    /// Accept unsigned requests (loopback addresses only).
    #[arg(long)]
    pub no_auth: bool,
    /// Enforce Pinpoint's per-operation request quotas with 429 answers, counted by this
    /// server (with N replicas, N times the quota in all).
    #[arg(long, value_enum, default_value_t = RateLimits::Off)]
    pub rate_limits: RateLimits,
    /// Share of requests answered 500 before any work (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub fault_rate: f64,
    /// Share of requests whose work is committed and whose answer is then a 500 (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub lost_response_rate: f64,
    /// Delay added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Seed for the fault draws, so a chaos run reproduces.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Connections served at once; more wait in the backlog.
    #[arg(long, default_value_t = server::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (idle keep-alive waits
    /// included) before it is closed, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Request bodies held in memory at once, over all connections, in MiB (at least 7, one
    /// body at Pinpoint's limit); more wait, then get 429.
    #[arg(long, default_value_t = (server::BODY_BUDGET_BYTES / (1024 * 1024)) as u64, value_parser = clap::value_parser!(u64).range(7..))]
    pub max_body_memory_mib: u64,
    /// A folder import and export jobs may name by `file:///…` URL (repeatable). Without
    /// one, jobs use S3 only (the standard AWS chain; AWS_ENDPOINT_URL_S3 for an
    /// S3-compatible store).
    #[arg(long, value_name = "DIR")]
    pub import_root: Vec<PathBuf>,
    /// An S3 bucket, or bucket/prefix, that import and export jobs may name (repeatable).
    /// When given, no other bucket or prefix is read or written, whatever the server's
    /// credentials reach: set it in production.
    #[arg(long, value_name = "BUCKET[/PREFIX]")]
    pub s3_allow: Vec<String>,
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let auth = match (&self.credentials_file, self.no_auth) {
            (Some(path), false) => Auth::SigV4(Credentials::from_file(path)?),
            (None, true) => Auth::None,
            _ => bail!("serve needs the keys that may sign requests: --credentials-file FILE (lines of `ACCESS_KEY_ID SECRET_ACCESS_KEY [read-write|read-only]`), or --no-auth on a loopback address"),
        };
        Ok(ServerConfig {
            listen: self.listen,
            data: self.data.clone(),
            pg: server::store::pg::PgSettings {
                max: self.db_pool,
                statements: self.db_statements,
                statement_timeout: self.db_statement_timeout,
            },
            job_lease: self.job_lease,
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            auth,
            rate_limits: self.rate_limits == RateLimits::Pinpoint,
            faults: FaultConfig {
                fault_rate: self.fault_rate,
                lost_response_rate: self.lost_response_rate,
                latency: Duration::from_millis(self.latency_ms),
                seed: self.fault_seed,
            },
            body_timeout: server::BODY_TIMEOUT,
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            body_budget: (self.max_body_memory_mib as usize) * 1024 * 1024,
            import_roots: self.import_root.clone(),
            s3_allow: self.s3_allow.clone(),
            s3: None,
            run_jobs: true,
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ServeAction {
    /// Copy a SQLite data file into a PostgreSQL database: applications, every segment
    /// version, campaigns, journeys, tags, endpoints, jobs. Verifies counts and checksums
    /// per table; safe to rerun (rows already there are checked, not copied twice).
    #[command(
        after_help = "Example:\n  segmentctl serve migrate --from /var/lib/segmentctl/pinpoint.db --to \"$DATABASE_URL\""
    )]
    Migrate {
        /// The SQLite data file to copy from (read only).
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The PostgreSQL database to copy into (postgres://… or libpq's host=… dbname=…);
        /// migrated first.
        #[arg(
            long,
            value_name = "postgres://…",
            env = "SEGMENTCTL_MIGRATE_TO",
            hide_env_values = true,
            value_parser = DataSourceParser
        )]
        to: DataSource,
    },
}

/// `--data` and `--to`, read by [`DataSource::parse`]. A refusal never repeats the value,
/// which may hold a password (clap's own message for a bad value would).
#[derive(Clone)]
struct DataSourceParser;

impl clap::builder::TypedValueParser for DataSourceParser {
    type Value = DataSource;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DataSource, clap::Error> {
        let flag = arg
            .and_then(|a| a.get_long())
            .map_or_else(|| "the database".to_string(), |l| format!("--{l}"));
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{flag}: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8 text".into()))?;
        DataSource::parse(text).map_err(refuse)
    }
}

fn connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a number of connections, 1 or more, found {s:?}"
        )),
    }
}

fn pool_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of connections from 1 to 1000, found {s:?}"
        )),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a probability from 0 to 1, found {s:?}")),
    }
}

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// A statement timeout PostgreSQL cannot take is refused on the command line, not by
    /// the database at start.
    #[test]
    fn a_statement_timeout_past_postgresqls_range_is_refused() {
        assert_eq!(
            parse_statement_timeout("596h").unwrap(),
            Duration::from_secs(596 * 3600)
        );
        assert_eq!(
            parse_statement_timeout("597h").unwrap_err(),
            "\"597h\" is longer than PostgreSQL's statement_timeout takes (at most 2147483647ms, about 24.8 days)"
        );
    }

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "segmentctl", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:?}");
    }
}
