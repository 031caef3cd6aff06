//! Which API a request is for, by its path: the server answers two on one listener.
//!
//! - Pinpoint's Segment API: every path under `/v1/` (and anything unknown), signed for
//!   `mobiletargeting`, errors named as Pinpoint names them.
//! - Customer Profiles' segment-definition API: `/domains…` and `/tags/…`, signed for
//!   `profile`, errors named as Customer Profiles names them (`ResourceNotFoundException`,
//!   `AccessDeniedException`, `ThrottlingException`, `InternalServerException`).
//!
//! - Amazon Connect outbound campaigns (v2): every path under `/v2/`, signed for
//!   `connect-campaigns`, errors named as that API names them (`ValidationException`,
//!   `ConflictException`, …): the few calls the campaign guard of a Customer Profiles target
//!   makes.
//!
//! The families share no path, so one look at the path decides which checks and names
//! apply, before anything else is read.

use axum::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Pinpoint,
    CustomerProfiles,
    ConnectCampaigns,
}

impl Api {
    /// The API a path belongs to.
    pub fn of_path(path: &str) -> Api {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/domains") || path.starts_with("/tags/") {
            Api::CustomerProfiles
        } else if path.starts_with("/v2/") {
            Api::ConnectCampaigns
        } else {
            Api::Pinpoint
        }
    }

    /// The service name a request's SigV4 credential scope must carry.
    pub const fn signing_name(self) -> &'static str {
        match self {
            Api::Pinpoint => "mobiletargeting",
            Api::CustomerProfiles => "profile",
            Api::ConnectCampaigns => "connect-campaigns",
        }
    }
}

/// Whether a request only reads, so a read-only key may make it: GET, HEAD and OPTIONS, the
/// three Customer Profiles operations that read through a POST (SearchProfiles,
/// GetSegmentMembership, CreateSegmentEstimate, which stores nothing but its own count), and
/// Connect campaigns' ListCampaigns and GetCampaignStateBatch.
/// Matched on the whole path, segment by segment, never on a prefix.
pub fn is_read(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if *method != Method::POST {
        return false;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["domains", d, "profiles", "search"]
            | ["domains", d, "segment-estimates"]
            | ["domains", d, "segments", _, "membership"]
            if !d.is_empty()
    ) || matches!(
        parts.as_slice(),
        ["v2", "campaigns-summary"] | ["v2", "campaigns-state"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_decides_the_api() {
        for (path, api) in [
            ("/v1/apps", Api::Pinpoint),
            ("/v1/tags/arn%3Aaws", Api::Pinpoint),
            ("/domains", Api::CustomerProfiles),
            (
                "/domains/shop/segment-definitions/vip",
                Api::CustomerProfiles,
            ),
            ("/tags/arn%3Aaws%3Aprofile", Api::CustomerProfiles),
            ("/domainsx", Api::Pinpoint),
            ("/tags", Api::Pinpoint),
            ("/", Api::Pinpoint),
            ("/livez", Api::Pinpoint),
            ("/v2/campaigns/abc", Api::ConnectCampaigns),
            ("/v2/campaigns-summary", Api::ConnectCampaigns),
            ("/v2", Api::Pinpoint),
        ] {
            assert_eq!(Api::of_path(path), api, "{path}");
        }
        assert_eq!(Api::CustomerProfiles.signing_name(), "profile");
        assert_eq!(Api::Pinpoint.signing_name(), "mobiletargeting");
        assert_eq!(Api::ConnectCampaigns.signing_name(), "connect-campaigns");
    }

    #[test]
    fn only_five_posts_are_reads_and_only_on_their_exact_paths() {
        let post = Method::POST;
        for path in [
            "/domains/shop/profiles/search",
            "/domains/shop/segment-estimates",
            "/domains/shop/segments/vip/membership",
            "/v2/campaigns-summary",
            "/v2/campaigns-state",
        ] {
            assert!(is_read(&post, path), "{path}");
        }
        for path in [
            "/domains/shop/profiles",
            "/domains/shop/profiles/delete",
            "/domains/shop/profiles/search/x",
            "/domains//profiles/search",
            "/domains/shop/segment-definitions/vip",
            "/domains/shop/segments/vip/snapshots",
            "/domains/shop",
            "/tags/arn",
            "/v1/apps",
            "/v2/campaigns/abc/source",
            "/v2/campaigns/abc/start",
            "/v2/campaigns-summary/x",
        ] {
            assert!(!is_read(&post, path), "{path}");
        }
        assert!(is_read(&Method::GET, "/domains/shop"));
        assert!(!is_read(
            &Method::DELETE,
            "/domains/shop/segments/vip/membership"
        ));
        assert!(!is_read(&Method::PUT, "/domains/shop/profiles/search"));
    }
}
