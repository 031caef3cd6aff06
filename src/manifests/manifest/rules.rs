//! The rules one manifest document must satisfy on its own, checked after it is read.

use super::{Kind, Manifest, API_VERSION};
use crate::model::validate::{self, key_path, Context};

/// A problem found: the field path, and what is wrong with it.
type Problems = Vec<(String, String)>;

/// The rules one document must satisfy on its own: those of every manifest, then those of
/// its kind, in the order a reader meets them.
pub(super) fn document_rules(m: &Manifest) -> Problems {
    let mut out = Vec::new();
    common_rules(m, &mut out);
    match m.kind {
        Kind::ImportedSegment => imported_segment_rules(m, &mut out),
        Kind::Segment => segment_rules(m, &mut out),
        Kind::Application => application_rules(m, &mut out),
    }
    out
}

/// What is wrong with a manifest's `apiVersion`, if anything (every kind's rule).
pub(super) fn api_version(v: &str) -> Option<(String, String)> {
    (v != API_VERSION).then(|| {
        (
            "apiVersion".into(),
            format!("unknown apiVersion {v:?}; expected {API_VERSION}"),
        )
    })
}

/// The apiVersion, the name, and a source only where it belongs.
fn common_rules(m: &Manifest, out: &mut Problems) {
    out.extend(api_version(&m.api_version));
    if let Some(msg) = name_problem(&m.metadata.name) {
        out.push(("metadata.name".into(), msg));
    }
    if m.kind != Kind::ImportedSegment && m.source.is_some() {
        out.push((
            "source".into(),
            "only an ImportedSegment has a source; remove it, or make this kind: ImportedSegment"
                .into(),
        ));
    }
}

/// A segment names its application once: by id (`what_id` says what an id looks like) or
/// by an Application manifest's name.
fn application_choice(m: &Manifest, kind: &str, what_id: &str, out: &mut Problems) {
    let md = &m.metadata;
    match (&md.application, &md.application_ref) {
        (None, None) => out.push((
            "metadata".into(),
            format!("{kind} needs metadata.application (an application id) or metadata.applicationRef (an Application manifest's name)"),
        )),
        (Some(_), Some(_)) => out.push((
            "metadata.applicationRef".into(),
            "give metadata.application or metadata.applicationRef, not both".into(),
        )),
        (Some(id), None) if !is_app_id(id) => out.push((
            "metadata.application".into(),
            format!("{id:?} is not an application id; expected {what_id}"),
        )),
        _ => {}
    }
}

/// Tag keys under segmentctl's prefix are its ownership tags, never the user's.
fn reserved_tags(m: &Manifest, out: &mut Problems) {
    if let Some(tags) = &m.spec.tags {
        for k in tags.keys().filter(|k| k.starts_with(crate::TAG_PREFIX)) {
            out.push((
                key_path("spec.tags", k),
                format!(
                    "tag keys starting with {:?} are reserved for segmentctl's ownership tags",
                    crate::TAG_PREFIX
                ),
            ));
        }
    }
}

/// The API's rules for tags (count, lengths, characters).
fn tag_rules(m: &Manifest, out: &mut Problems) {
    if let Some(tags) = &m.spec.tags {
        for v in validate::tags_rules("spec.tags", tags) {
            out.push((v.path, v.message));
        }
    }
}

/// An ImportedSegment: an application, no adoption, only Name and tags, and a source.
fn imported_segment_rules(m: &Manifest, out: &mut Problems) {
    application_choice(m, "an ImportedSegment", "32 lowercase hex characters", out);
    if m.metadata.adopt.is_some() {
        out.push((
            "metadata.adopt".into(),
            "an ImportedSegment cannot adopt a segment; import it under a new name".into(),
        ));
    }
    if m.spec.dimensions.is_some() || m.spec.segment_groups.is_some() {
        out.push((
            "spec".into(),
            "an ImportedSegment's spec has only Name and tags: its endpoints come from source; criteria belong in a Segment that builds on it by Ref".into(),
        ));
    }
    if m.spec.name.as_deref().is_none_or(str::is_empty) {
        out.push((
            "spec.Name".into(),
            "missing: an imported segment needs a Name".into(),
        ));
    }
    source_rules(m, out);
    reserved_tags(m, out);
    tag_rules(m, out);
}

/// An ImportedSegment's source: an s3:// URL with a bucket, a file:// URL or a relative
/// path, never a compressed file.
fn source_rules(m: &Manifest, out: &mut Problems) {
    let Some(src) = &m.source else {
        out.push(("source".into(), "missing: an ImportedSegment names the file its endpoints come from (source.url, source.format)".into()));
        return;
    };
    if src.url.is_empty() {
        out.push((
            "source.url".into(),
            "expected s3://bucket/key or a path relative to this file".into(),
        ));
    } else if src.url.contains("://")
        && !src.url.starts_with("s3://")
        && !src.url.starts_with("file://")
    {
        out.push((
            "source.url".into(),
            format!(
                "{:?}: expected s3://bucket/key, file:///path, or a path relative to this file",
                crate::text::safe(&src.url)
            ),
        ));
    } else if src.url.starts_with("s3://")
        && src.url["s3://".len()..]
            .split('/')
            .next()
            .is_none_or(str::is_empty)
    {
        out.push((
            "source.url".into(),
            "no bucket; expected s3://bucket/key".into(),
        ));
    }
    let lower = src.url.to_ascii_lowercase();
    if [".gz", ".zip", ".bz2", ".zst", ".xz"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        out.push((
            "source.url".into(),
            "Pinpoint imports no compressed files; point at the uncompressed file".into(),
        ));
    }
}

/// A Segment: an application, an adoption that names a segment, the API's rules for the
/// definition, and no reserved tags.
fn segment_rules(m: &Manifest, out: &mut Problems) {
    application_choice(
        m,
        "a Segment",
        "32 lowercase hex characters, as the Pinpoint console's Project ID",
        out,
    );
    if m.metadata.adopt.as_deref() == Some("") {
        out.push((
            "metadata.adopt".into(),
            "expected the id of the segment to adopt".into(),
        ));
    }
    for v in validate::write_segment_request(&m.spec, Context::Manifest) {
        out.push((prefixed("spec", &v.path), v.message));
    }
    reserved_tags(m, out);
}

/// An Application: none of a segment's metadata, only Name and tags.
fn application_rules(m: &Manifest, out: &mut Problems) {
    let md = &m.metadata;
    for (field, set) in [
        ("metadata.application", md.application.is_some()),
        ("metadata.applicationRef", md.application_ref.is_some()),
        ("metadata.adopt", md.adopt.is_some()),
        ("metadata.protect", md.protect),
    ] {
        if set {
            out.push((
                field.into(),
                "not used by an Application manifest; remove it".into(),
            ));
        }
    }
    if m.spec.dimensions.is_some() || m.spec.segment_groups.is_some() {
        out.push((
            "spec".into(),
            "an Application spec has only Name and tags; segment criteria belong in a Segment manifest".into(),
        ));
    }
    tag_rules(m, out);
}

fn prefixed(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// Why a `metadata.name` is invalid, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then(|| {
        format!(
            "invalid name {name:?}; expected lowercase letters, digits and '-' (not first or last), at most 63 characters"
        )
    })
}

pub fn is_app_id(id: &str) -> bool {
    id.len() == 32
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}
