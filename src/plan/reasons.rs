//! Why the planner decided what it did, as data: why a step is blocked, why a segment is
//! deleted, what a reviewer should know. The reports turn them into words (escaped for where
//! they are shown); the daemon turns them into metric labels.

use serde::{Deserialize, Serialize};

/// Why a step will not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum BlockReason {
    /// `metadata.adopt` names a segment another owner manages.
    OtherOwner { segment_id: String, owner: String },
    /// `metadata.adopt` names a segment this owner already manages under another name.
    AlreadyManaged { segment_id: String, name: String },
    /// `segmentctl:protect=true` is set on the live segment.
    Protected,
    /// An active campaign (SCHEDULED, EXECUTING, PENDING_NEXT_RUN) uses the segment.
    CampaignUses {
        campaign: String,
        campaign_id: String,
        status: String,
    },
    /// A published journey (ACTIVE, PAUSED, CLOSED) uses the segment.
    JourneyUses {
        journey: String,
        journey_id: String,
        state: String,
    },
    /// A segment that stays builds on this one.
    BuiltOn {
        segment_id: String,
        /// Its manifest name, when this owner manages it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        managed_as: Option<String>,
        /// Its display name otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// A deleted segment built on this one is blocked, so this one stays too.
    DependentBlocked {
        segment_id: String,
        name: String,
        /// Whether `--allow-delete-in-use` lifts the dependent's blocks (and so this one).
        liftable: bool,
    },
    /// A base segment this one needs is blocked, so this one cannot be created or changed.
    BaseBlocked { name: String },
    /// The application's manifests declare no segment while managed ones exist.
    NoSegmentsDeclared { managed: usize },
    /// The plan deletes more than `max_delete_percent` of the application's managed segments.
    TooManyDeletes {
        deleting: usize,
        managed: usize,
        limit_percent: f64,
    },
    /// The live segment is of the other type (IMPORT vs DIMENSIONAL): Pinpoint cannot turn
    /// one into the other.
    TypeChange { segment_id: String, live: String },
    /// An imported segment's source could not be read to see whether it changed.
    SourceUnreadable { url: String, why: String },
}

impl BlockReason {
    /// `--allow-delete-in-use` lifts this block (campaigns, journeys, dependent segments);
    /// protection and the mass-deletion guards cannot be lifted that way.
    pub fn in_use(&self) -> bool {
        match self {
            Self::CampaignUses { .. } | Self::JourneyUses { .. } | Self::BuiltOn { .. } => true,
            Self::DependentBlocked { liftable, .. } => *liftable,
            _ => false,
        }
    }

    /// The metric label of this kind of block.
    pub fn label(&self) -> &'static str {
        match self {
            Self::OtherOwner { .. } => "other_owner",
            Self::AlreadyManaged { .. } => "already_managed",
            Self::Protected => "protected",
            Self::CampaignUses { .. } => "campaign_uses",
            Self::JourneyUses { .. } => "journey_uses",
            Self::BuiltOn { .. } => "built_on",
            Self::DependentBlocked { .. } => "dependent_blocked",
            Self::BaseBlocked { .. } => "base_blocked",
            Self::NoSegmentsDeclared { .. } => "no_segments_declared",
            Self::TooManyDeletes { .. } => "too_many_deletes",
            Self::TypeChange { .. } => "type_change",
            Self::SourceUnreadable { .. } => "source_unreadable",
        }
    }
}

/// Why a managed segment is deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum DeleteCause {
    /// Its manifest is gone and pruning is on.
    Pruned,
    /// Several live segments claim its name; `kept` stays.
    Duplicate { kept: String, claimants: usize },
}

/// Something a reviewer should know that does not stop the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// The definition has no criterion and no base segment: it matches every endpoint.
    MatchesEveryEndpoint,
    /// A create, while an unmanaged segment with the same display name exists.
    UnmanagedSameName { segment_id: String },
    /// A deleted segment is used by a campaign that is not active.
    CampaignWillShowDeleted { campaign: String, status: String },
    /// A deleted segment is referred to by a journey that is not published.
    JourneyRefers { journey: String, state: String },
    /// `metadata.adopt` of `name` names a segment that does not exist.
    AdoptTargetMissing { name: String, segment_id: String },
    /// Managed segments without a manifest, kept because pruning is off.
    OrphansKept { names: Vec<String> },
    /// Segments managed by this owner in an application no manifest here names.
    NotDeclaredHere { owner: String, managed: usize },
    /// An Application manifest's name differs from the live one (Pinpoint cannot rename).
    AppNameDiffers {
        live: String,
        declared: String,
        origin: String,
    },
}
