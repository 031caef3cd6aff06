//! The command line: raw arguments (`args`) become each command's plain options, and `run`
//! hands them to one function per command (`commands`), as ripgrep's `run` does.
//!
//! Exit codes are a contract: 0 success / no changes, 1 error, 2 changes present (with
//! `--detailed-exitcode`), 3 the plan has blocked steps.

pub mod args;
pub mod commands;
mod log;
pub mod status;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{CommandFactory, Parser};

use crate::reconcile::pipeline::Inputs;
use crate::text::use_colour;
use args::{
    ApplyFormat, Cli, Command, ConvertReport, EstimateArgs, ImportArgs, LogFormat, PlanArgs,
    PlanFormat, RunArgs, ServeAction, ServeArgs, SqlArgs, SqlDialect, StatusArgs,
};
use commands::exit;

/// The log filter when `SEGMENTCTL_LOG` is not set: segmentctl at info; the AWS SDK's own
/// retry and credential-probing warnings only as errors (segmentctl says what went wrong
/// in one line of its own).
pub const DEFAULT_LOG: &str = "info,aws_config=error,aws_smithy_runtime=error,aws_smithy_runtime_api=error,aws_sdk_pinpoint=error,aws_credential_types=error,aws_runtime=error";

/// Logs to stderr: `serve`'s log (a line per request) through a buffer written in blocks
/// ([`log`]); the other commands' in order with what they print themselves.
fn init_logging(format: LogFormat, serving: bool) -> Option<log::Flusher> {
    // The server's request log is for `serve`; the server embedded in the other commands
    // logs only what goes wrong, unless SEGMENTCTL_LOG asks for more.
    let default = if serving {
        DEFAULT_LOG.to_string()
    } else {
        format!("{DEFAULT_LOG},segmentctl::server=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEGMENTCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colour(&std::io::stderr()));
    if serving {
        let (writer, flusher) = log::stderr();
        let builder = builder.with_writer(writer);
        let _ = match format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        return Some(flusher);
    }
    // The other commands log little, in order with what they print to stderr themselves.
    let builder = builder.with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    None
}

/// A tip for the flags other tools use to skip the prompt (`--yes`, Terraform's
/// `-auto-approve`), which are too far from `--auto-approve` for clap's own suggestion.
fn approve_tip(e: &clap::Error) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    // Read from the arguments themselves: clap reads `-auto-approve` as the short flag `-a`.
    let flag = std::env::args().skip(1).find(|a| {
        matches!(
            a.split('=').next().unwrap_or_default(),
            "--yes" | "-y" | "-yes" | "-auto-approve" | "--auto_approve" | "--approve" | "--force"
        )
    })?;
    Some(format!(
        "\n  tip: to apply without a prompt, pass --auto-approve (not {})\n",
        crate::text::safe(&flag)
    ))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // Usage errors exit 1: 2 and 3 mean "changes present" and "blocked" (clap would use 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK // --help, --version
            };
            let _ = e.print();
            if let Some(tip) = approve_tip(&e) {
                crate::text::err(&tip);
            }
            return ExitCode::from(code);
        }
    };
    if matches!(cli.command, Command::Run(_) | Command::Serve(_)) {
        // Long-running: keep memory from piling up in per-thread arenas.
        crate::daemon::limit_malloc_arenas();
    }
    let log = init_logging(cli.log_format, matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::text::err(&format!("error: cannot start the async runtime: {e}\n"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A read that never returns (a hung network file system) must not keep the process
    // from exiting once the work is done.
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The log's last lines before the error that ends it.
    drop(log);
    match result {
        Ok(code) => ExitCode::from(code),
        // Located manifest errors were printed already.
        Err(e) if e.is::<commands::Invalid>() => ExitCode::from(1),
        Err(e) => {
            crate::text::err(&format!("error: {e:#}\n"));
            ExitCode::from(1)
        }
    }
}

/// One function per command, each given what its arguments validated to.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate(a) => Ok(validate(&a.dir, a.config.as_deref())),
        Command::Plan(a) => plan(a).await,
        Command::Apply(a) => apply(a).await,
        Command::Import(a) => import(a).await,
        Command::Run(a) => run_controller(a).await,
        Command::Status(a) => status(&a).await,
        Command::Estimate(a) => estimate(&a),
        Command::Sql(a) => sql(a),
        Command::Convert(a) => commands::convert(&commands::ConvertOptions {
            dir: a.dir,
            config: a.config,
            out: a.out,
            drop_unsupported: a.drop_unsupported,
            endpoints: a.endpoints,
            as_of: a.as_of,
            format: match a.format {
                ConvertReport::Text => commands::ConvertFormat::Text,
                ConvertReport::Markdown => commands::ConvertFormat::Markdown,
                ConvertReport::Json => commands::ConvertFormat::Json,
            },
        }),
        Command::Completion { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "segmentctl", &mut buf);
            crate::text::out(&String::from_utf8_lossy(&buf));
            Ok(exit::OK)
        }
        Command::Man { command, out } => man_pages(command.as_deref(), out.as_deref()),
        Command::Schema => {
            crate::text::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&crate::manifests::manifest::json_schema())?
            ));
            Ok(exit::OK)
        }
        Command::Serve(a) => serve(a).await,
    }
}

async fn plan(a: PlanArgs) -> anyhow::Result<u8> {
    let inputs = Inputs {
        dir: a.dir.clone(),
        config: a.target.config.clone(),
        overrides: a.target.overrides(a.prune),
    };
    let o = commands::PlanOptions {
        format: match a.format {
            PlanFormat::Text => commands::Format::Text,
            PlanFormat::Markdown => commands::Format::Markdown,
            PlanFormat::Json => commands::Format::Json,
        },
        out: a.out,
        detailed_exitcode: a.detailed_exitcode,
        audience: a.endpoints.map(|endpoints| commands::AudienceOptions {
            endpoints,
            as_of: a.as_of,
        }),
        revision: commands::revision(a.revision.as_deref()),
        profiles: a.profiles,
        campaigns: crate::plan::definitions::CampaignPolicy {
            allow_delete_in_use: a.allow_delete_in_use,
            repoint: a.repoint_campaigns,
        },
    };
    commands::plan_command(&inputs, &o).await
}

async fn apply(a: args::ApplyArgs) -> anyhow::Result<u8> {
    let ov = a.target.overrides(a.prune);
    let o = commands::ApplyArgs {
        auto_approve: a.auto_approve,
        allow_delete_in_use: a.allow_delete_in_use,
        repoint_campaigns: a.repoint_campaigns,
        wait: a.wait,
        json: a.format == ApplyFormat::Json,
    };
    if o.json && !a.auto_approve {
        bail!("apply --format json needs --auto-approve: JSON lines are for programs, which cannot answer the confirmation");
    }
    let manifest_file = a
        .source
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml");
    if a.source.is_file() && !manifest_file {
        return commands::apply_saved(&a.source, a.target.config.as_deref(), &ov, &o).await;
    }
    let inputs = Inputs {
        dir: a.source,
        config: a.target.config,
        overrides: ov,
    };
    commands::apply_dir(&inputs, &o, commands::revision(a.revision.as_deref())).await
}

async fn import(a: ImportArgs) -> anyhow::Result<u8> {
    let inputs = Inputs {
        dir: a.dir_flag.clone().unwrap_or(a.dir),
        config: a.target.config.clone(),
        overrides: a.target.overrides(false),
    };
    let cfg = commands::settings(&inputs)?;
    match (&cfg.target, &a.application) {
        (crate::manifests::config::Target::CustomerProfiles(_), None) => {
            commands::import_definitions(&inputs, &a.out).await
        }
        (crate::manifests::config::Target::CustomerProfiles(_), Some(_)) => anyhow::bail!(
            "--application names a Pinpoint application; the target is a Customer Profiles domain, whose definitions import without it"
        ),
        (_, Some(app)) => commands::import(&inputs, app, &a.out).await,
        (_, None) => anyhow::bail!(
            "--application APP_ID is required: the target is Pinpoint (a Customer Profiles target, --target customer-profiles:DOMAIN, imports its domain's definitions)"
        ),
    }
}

/// `run`: the controller, until Ctrl-C or SIGTERM.
async fn run_controller(a: RunArgs) -> anyhow::Result<u8> {
    let shard = match (a.shard, a.shard_from_hostname) {
        (Some(s), _) => Some(s),
        (None, Some(n)) => {
            let host = hostname().ok_or_else(|| {
                anyhow::anyhow!("cannot read the hostname for --shard-from-hostname")
            })?;
            Some(crate::daemon::Shard::from_hostname(&host, n).map_err(|e| anyhow::anyhow!(e))?)
        }
        (None, None) => None,
    };
    let cfg = crate::daemon::DaemonConfig {
        overrides: a.target.overrides(a.prune),
        dir: a.dir,
        config_file: a.target.config,
        interval: a.interval,
        stuck_after: a.stuck_after,
        admin_listen: a.admin_listen,
        admin_max_connections: a.admin_max_connections,
        admin_header_timeout: a.admin_header_timeout,
        mode: a.mode,
        shard,
    };
    crate::daemon::run(cfg, commands::shutdown_signal()).await?;
    Ok(exit::OK)
}

async fn status(a: &StatusArgs) -> anyhow::Result<u8> {
    let v = status::fetch(&a.admin).await?;
    match a.format {
        ApplyFormat::Json => crate::text::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        )),
        ApplyFormat::Text => crate::text::out(&status::render(&v, &a.admin)),
    }
    Ok(exit::OK)
}

fn estimate(a: &EstimateArgs) -> anyhow::Result<u8> {
    commands::estimate(
        &a.dir,
        a.config.as_deref(),
        &a.endpoints,
        a.as_of.as_deref(),
        a.format == ApplyFormat::Json,
    )
}

fn sql(a: SqlArgs) -> anyhow::Result<u8> {
    use crate::audience::evaluate::sql::Dialect;
    commands::sql(commands::SqlOptions {
        dir: a.dir,
        config: a.config,
        dialect: match a.dialect {
            SqlDialect::Spark => Dialect::Spark,
            SqlDialect::Duckdb => Dialect::DuckDb,
            SqlDialect::Postgres => Dialect::Postgres,
        },
        segments: a.segments,
        members: a.members,
        customer_profiles: a.customer_profiles,
        schema: a.schema,
        as_of: a.as_of,
        table: a.table,
        files: a.files,
    })
}

async fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    match a.action {
        Some(ServeAction::Migrate { from, to }) => commands::serve::migrate(from, to).await,
        None if a.migrate_only => commands::serve::migrate_only(a.data).await,
        None => commands::serve::serve(a.config()?).await,
    }
}

fn validate(dir: &std::path::Path, config: Option<&std::path::Path>) -> u8 {
    use crate::text::plural;
    match crate::manifests::workspace::load(dir, config) {
        Ok(ws) if ws.is_profiles() => {
            crate::text::out(&format!(
                "{} OK ({}, for a Customer Profiles domain)\n",
                plural(ws.documents, "manifest"),
                match (ws.definitions.len(), ws.domain.is_some()) {
                    (0, true) => "a Domain".to_string(),
                    (n, true) => format!("{} and a Domain", plural(n, "segment definition")),
                    (n, false) => plural(n, "segment definition"),
                },
            ));
            0
        }
        Ok(ws) => {
            crate::text::out(&format!(
                "{} OK ({}, {})\n",
                plural(ws.documents, "manifest"),
                plural(ws.desired.apps.len(), "application"),
                plural(ws.desired.segment_count(), "segment")
            ));
            0
        }
        Err(errors) => {
            commands::print_manifest_errors(&errors);
            1
        }
    }
}

/// `man`: the pages, `(file name, roff)`: segmentctl.1, then segmentctl-COMMAND.1 for each
/// command (the pages segmentctl(1) lists); one of them with `command`; written to `out`.
fn man_pages(command: Option<&str>, out: Option<&std::path::Path>) -> anyhow::Result<u8> {
    // Built, so that clap's own `help` command, which segmentctl(1) lists, has its page too.
    let mut root = Cli::command();
    root.build();
    let mut pages: Vec<(String, clap::Command)> = vec![("segmentctl".into(), root.clone())];
    for sub in root.get_subcommands() {
        let name = format!("segmentctl-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    if let Some(c) = command {
        let wanted = format!("segmentctl-{c}");
        let names: Vec<String> = pages
            .iter()
            .skip(1)
            .map(|(n, _)| n["segmentctl-".len()..].to_string())
            .collect();
        let Some(page) = pages.iter().position(|(n, _)| *n == wanted) else {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = crate::model::closest(c, &refs)
                .map(|m| format!(" (did you mean {m}?)"))
                .unwrap_or_default();
            anyhow::bail!(
                "no manual page for {}{hint}; the commands are {}",
                crate::text::safe(c),
                names.join(", ")
            );
        };
        pages = vec![pages.swap_remove(page)];
    }
    let mut all = Vec::new();
    for (name, cmd) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        match out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let path = dir.join(format!("{name}.1"));
                std::fs::write(&path, &buf)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                crate::text::out(&format!("{}\n", path.display()));
            }
            None => all.extend(buf),
        }
    }
    if out.is_none() {
        crate::text::out(&String::from_utf8_lossy(&all));
    }
    Ok(0)
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
}
