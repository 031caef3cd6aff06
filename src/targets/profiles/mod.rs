//! The second target: a Customer Profiles domain's segment definitions, through
//! `aws-sdk-customerprofiles`. The planner and executor of `SegmentDefinition` manifests see
//! only [`Profiles`]; [`SdkProfiles`] is its implementation over the SDK (pacing and retries
//! as the Pinpoint side's, [`crate::targets::pacing`]).
//!
//! A definition has no update: a change is a delete and a create, or a create under another
//! name. A create is safe to repeat: the API keys definitions by name, and answers a create
//! identical to the stored definition with that definition (its `idempotent` trait), so a
//! lost answer is retried, never duplicated.
//!
//! The campaign guard reads the Connect outbound campaigns (v2) of the same account and
//! region through `aws-sdk-connectcampaignsv2` ([`campaigns`]): which use a definition, and in
//! what state; and re-points one when asked.

pub mod campaigns;
pub mod convert;

use std::future::Future;

use aws_sdk_customerprofiles::Client;

use crate::model::profiles::{CreateSegmentDefinitionRequest, DomainSpec};
use crate::model::Tags;
pub use crate::plan::definitions::{LiveCampaign, LiveDefinition};
use crate::targets::pacing::{Api, CallError, Class};

/// How long the embedded default's own domain keeps a profile, in days (as
/// `aws customer-profiles create-domain` examples give it).
pub const EMBEDDED_EXPIRATION_DAYS: i64 = 366;
pub use crate::targets::pinpoint::Deleted;

/// A definition as ListSegmentDefinitions shows it: no criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionItem {
    pub name: String,
    pub arn: String,
    pub tags: Tags,
}

/// A failure of one operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProfilesError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Unrepresentable(#[from] convert::Unrepresentable),
    /// The SDK's builders refused a definition (a member it requires is missing).
    #[error("the request could not be built: {0}")]
    Build(String),
    /// What the plan was made on changed before its step ran (a campaign's source).
    #[error("{0}; plan again")]
    Moved(String),
    /// A list that cannot be read whole.
    #[error("{0}")]
    Paging(String),
}

/// A list that hands back the token it was given would be read forever, or cut short: an
/// error, never a partial list (the guard must see every campaign, the plan every definition).
pub(crate) fn repeated_token(operation: &str) -> ProfilesError {
    ProfilesError::Paging(format!(
        "{operation} answered the page token it was given: the list cannot be read whole"
    ))
}

impl ProfilesError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProfilesError::Call(c) if c.is_not_found())
    }
}

pub type Result<T> = std::result::Result<T, ProfilesError>;

/// The operations the reconciler uses on a domain.
///
/// Guarantees: lists return every page; creates are safe to repeat (see the module); the
/// other writes are too.
pub trait Profiles: Send + Sync {
    /// The domain's settings (segmentctl's own tags left out); `None`: it does not exist.
    fn get_domain(&self, domain: &str) -> impl Future<Output = Result<Option<DomainSpec>>> + Send;
    /// Creates a domain: with `spec` (a `kind: Domain` manifest's), else the embedded
    /// default's own settings.
    fn create_domain(
        &self,
        domain: &str,
        spec: Option<&DomainSpec>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every definition of the domain, with its tags.
    fn list_definitions(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<DefinitionItem>>> + Send;
    fn get_definition(
        &self,
        domain: &str,
        name: &str,
    ) -> impl Future<Output = Result<LiveDefinition>> + Send;
    /// Creates `name` from `spec` (whose tags hold the ownership tags); returns its ARN.
    fn create_definition(
        &self,
        domain: &str,
        name: &str,
        spec: &CreateSegmentDefinitionRequest,
    ) -> impl Future<Output = Result<String>> + Send;
    fn delete_definition(
        &self,
        domain: &str,
        name: &str,
    ) -> impl Future<Output = Result<Deleted>> + Send;
    /// A resource's tags (a domain's or a definition's).
    fn list_tags(&self, arn: &str) -> impl Future<Output = Result<Tags>> + Send;
    fn tag(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<()>> + Send;
    fn untag(&self, arn: &str, keys: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// Every campaign whose source is a segment definition, with its state.
    fn campaigns(&self) -> impl Future<Output = Result<Vec<LiveCampaign>>> + Send;
    /// Points campaign `id` at the definition `arn` (UpdateCampaignSource).
    fn repoint_campaign(&self, id: &str, arn: &str) -> impl Future<Output = Result<()>> + Send;
}

/// [`Profiles`] over `aws-sdk-customerprofiles`, and `aws-sdk-connectcampaignsv2` for the
/// campaigns.
#[derive(Clone)]
pub struct SdkProfiles {
    pub api: Api<Client>,
    pub campaigns: Api<aws_sdk_connectcampaignsv2::Client>,
}

impl SdkProfiles {
    pub fn new(api: Api<Client>, campaigns: Api<aws_sdk_connectcampaignsv2::Client>) -> Self {
        Self { api, campaigns }
    }
}

/// The SDK configuration for a self-hosted endpoint with fixed credentials (the embedded
/// default's own), the SDK's retries off (the callers retry): for either client.
pub fn endpoint_config(
    endpoint: &str,
    region: &str,
    key: &str,
    secret: &str,
) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(key, secret, None, None, "segmentctl"),
            ),
        )
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

fn tags_of(t: Option<&std::collections::HashMap<String, String>>) -> Tags {
    t.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

impl Profiles for SdkProfiles {
    async fn campaigns(&self) -> Result<Vec<LiveCampaign>> {
        campaigns::read(&self.campaigns).await
    }

    async fn repoint_campaign(&self, id: &str, arn: &str) -> Result<()> {
        campaigns::repoint(&self.campaigns, id, arn).await
    }

    async fn get_domain(&self, domain: &str) -> Result<Option<DomainSpec>> {
        let c = &self.api.client;
        match self
            .api
            .call("GetDomain", Class::Other, || {
                c.get_domain().domain_name(domain).send()
            })
            .await
        {
            Ok(d) => {
                let mut tags = tags_of(d.tags());
                tags.retain(|k, _| !DomainSpec::tag_not_compared(k));
                Ok(Some(DomainSpec {
                    default_expiration_days: d.default_expiration_days().map_or(0, i64::from),
                    default_encryption_key: d.default_encryption_key().map(str::to_string),
                    dead_letter_queue_url: d.dead_letter_queue_url().map(str::to_string),
                    tags: (!tags.is_empty()).then_some(tags),
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_domain(&self, domain: &str, spec: Option<&DomainSpec>) -> Result<()> {
        let c = &self.api.client;
        let embedded = DomainSpec {
            default_expiration_days: EMBEDDED_EXPIRATION_DAYS,
            ..Default::default()
        };
        let spec = spec.unwrap_or(&embedded);
        let days = i32::try_from(spec.default_expiration_days).unwrap_or(i32::MAX);
        let created = self
            .api
            .call("CreateDomain", Class::SegmentWrite, || {
                c.create_domain()
                    .domain_name(domain)
                    .default_expiration_days(days)
                    .set_default_encryption_key(spec.default_encryption_key.clone())
                    .set_dead_letter_queue_url(spec.dead_letter_queue_url.clone())
                    .set_tags(spec.tags.clone().map(|t| t.into_iter().collect()))
                    .send()
            })
            .await;
        let Err(e) = created else { return Ok(()) };
        // A create is not safe to repeat as such: a lost answer, retried, or another applier
        // meets the domain that exists now. Look: the same settings are this create's.
        match self.get_domain(domain).await {
            Ok(Some(live)) if live == spec.as_live() => Ok(()),
            Ok(Some(_)) => Err(ProfilesError::Moved(format!(
                "the domain {} was created meanwhile, with other settings than these",
                crate::text::safe(domain)
            ))),
            _ => Err(e.into()),
        }
    }

    async fn list_definitions(&self, domain: &str) -> Result<Vec<DefinitionItem>> {
        let c = &self.api.client;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .api
                .call("ListSegmentDefinitions", Class::Other, || {
                    c.list_segment_definitions()
                        .domain_name(domain)
                        .max_results(500)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for item in page.items() {
                out.push(DefinitionItem {
                    name: item
                        .segment_definition_name()
                        .unwrap_or_default()
                        .to_string(),
                    arn: item
                        .segment_definition_arn()
                        .unwrap_or_default()
                        .to_string(),
                    tags: tags_of(item.tags()),
                });
            }
            match page.next_token() {
                Some(t) if Some(t) == token.as_deref() => {
                    return Err(repeated_token("ListSegmentDefinitions"))
                }
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn get_definition(&self, domain: &str, name: &str) -> Result<LiveDefinition> {
        let c = &self.api.client;
        let out = self
            .api
            .call("GetSegmentDefinition", Class::Other, || {
                c.get_segment_definition()
                    .domain_name(domain)
                    .segment_definition_name(name)
                    .send()
            })
            .await?;
        let tags = tags_of(out.tags());
        Ok(LiveDefinition {
            name: out.segment_definition_name().unwrap_or(name).to_string(),
            arn: out.segment_definition_arn().to_string(),
            created_at: out.created_at().map(|t| t.secs()).unwrap_or_default(),
            spec: CreateSegmentDefinitionRequest {
                display_name: out.display_name().unwrap_or_default().to_string(),
                description: out.description().map(str::to_string),
                segment_groups: out.segment_groups().map(convert::from_groups).transpose()?,
                segment_sql_query: out.segment_sql_query().map(str::to_string),
                segment_sort: out.segment_sort().map(convert::from_sort).transpose()?,
                tags: (!tags.is_empty()).then_some(tags),
            },
        })
    }

    async fn create_definition(
        &self,
        domain: &str,
        name: &str,
        spec: &CreateSegmentDefinitionRequest,
    ) -> Result<String> {
        let c = &self.api.client;
        let built =
            |e: aws_smithy_types::error::operation::BuildError| ProfilesError::Build(e.to_string());
        let groups = spec
            .segment_groups
            .as_ref()
            .map(convert::to_groups)
            .transpose()
            .map_err(built)?;
        let sort = spec
            .segment_sort
            .as_ref()
            .map(convert::to_sort)
            .transpose()
            .map_err(built)?;
        let tags = spec
            .tags
            .as_ref()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        // Safe to repeat: the same request answers the stored definition (see the module).
        let out = self
            .api
            .call("CreateSegmentDefinition", Class::SegmentWrite, || {
                c.create_segment_definition()
                    .domain_name(domain)
                    .segment_definition_name(name)
                    .display_name(&spec.display_name)
                    .set_description(spec.description.clone())
                    .set_segment_groups(groups.clone())
                    .set_segment_sql_query(spec.segment_sql_query.clone())
                    .set_segment_sort(sort.clone())
                    .set_tags(tags.clone())
                    .send()
            })
            .await?;
        Ok(out.segment_definition_arn().unwrap_or_default().to_string())
    }

    async fn delete_definition(&self, domain: &str, name: &str) -> Result<Deleted> {
        let c = &self.api.client;
        match self
            .api
            .call("DeleteSegmentDefinition", Class::SegmentWrite, || {
                c.delete_segment_definition()
                    .domain_name(domain)
                    .segment_definition_name(name)
                    .send()
            })
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tags(&self, arn: &str) -> Result<Tags> {
        let c = &self.api.client;
        let out = self
            .api
            .call("ListTagsForResource", Class::Other, || {
                c.list_tags_for_resource().resource_arn(arn).send()
            })
            .await?;
        Ok(tags_of(out.tags()))
    }

    async fn tag(&self, arn: &str, tags: &Tags) -> Result<()> {
        let c = &self.api.client;
        let map: std::collections::HashMap<String, String> =
            tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.api
            .call("TagResource", Class::Other, || {
                c.tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(map.clone()))
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<()> {
        let c = &self.api.client;
        self.api
            .call("UntagResource", Class::Other, || {
                c.untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(keys.to_vec()))
                    .send()
            })
            .await?;
        Ok(())
    }
}
