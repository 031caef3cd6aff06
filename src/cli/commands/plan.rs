//! `plan`: the plan for a folder, as text, markdown or JSON, saved with `--out`, and its exit code.

use super::*;
use crate::plan::Plan;
use crate::reconcile::pipeline::Inputs;
use crate::text::{err, out, use_colour};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people: a terminal or a CI log.
    Text,
    /// A pull-request comment, as GitHub and GitLab render it.
    Markdown,
    /// The versioned plan document (the same that --out saves).
    Json,
}

pub struct PlanOptions {
    pub format: Format,
    pub out: Option<PathBuf>,
    pub detailed_exitcode: bool,
    pub audience: Option<AudienceOptions>,
    pub revision: Option<String>,
    /// `--profiles FILE` (a Customer Profiles target).
    pub profiles: Option<PathBuf>,
    /// `--repoint-campaigns`, `--allow-delete-in-use` (a Customer Profiles target).
    pub campaigns: crate::plan::definitions::CampaignPolicy,
}

pub async fn plan_command(inputs: &Inputs, o: &PlanOptions) -> anyhow::Result<u8> {
    if let Some((ws, cfg)) = super::definitions::definitions_workspace(inputs)? {
        return super::definitions::plan(inputs, &ws, &cfg, o).await;
    }
    if o.profiles.is_some() {
        anyhow::bail!("--profiles counts a Customer Profiles target's profiles; this folder holds Pinpoint manifests: count endpoints with --endpoints FILE");
    }
    if o.campaigns != Default::default() {
        anyhow::bail!("plan --repoint-campaigns and --allow-delete-in-use are for a Customer Profiles target; a Pinpoint plan shows the blocks `apply --allow-delete-in-use` lifts");
    }
    let (p, conn, _) = make_plan(inputs, o.audience.as_ref(), o.revision.clone(), false).await?;
    conn.close().await;
    let colour = use_colour(&std::io::stdout());
    let rendered = match o.format {
        Format::Text => crate::report::text(&p, colour),
        Format::Markdown => crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT),
        Format::Json => crate::report::json(&p) + "\n",
    };
    out(&rendered);
    if let Some(file) = &o.out {
        std::fs::write(file, crate::report::json(&p) + "\n")
            .with_context(|| format!("cannot write the plan to {}", file.display()))?;
        err(&format!(
            "Saved the plan to {}; apply it with: segmentctl apply {}\n",
            file.display(),
            file.display()
        ));
    }
    Ok(plan_exit(&p, o.detailed_exitcode))
}

pub fn plan_exit(p: &Plan, detailed: bool) -> u8 {
    if p.apps.iter().any(|a| a.error.is_some()) {
        exit::ERROR
    } else if p.has_blocked() {
        exit::BLOCKED
    } else if detailed && !p.is_empty() {
        exit::CHANGES
    } else {
        exit::OK
    }
}
