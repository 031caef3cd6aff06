//! The desired state: manifests checked against each other and arranged per application,
//! segments in dependency order. A pure function of the parsed documents.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::manifests::manifest::{ApplicationSpec, Document, Kind, ManifestError};
use crate::model::{closest, WriteSegmentRequest};

/// How a segment names its application.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppKey {
    /// An application id, given directly.
    Id(String),
    /// The `metadata.name` of an Application manifest.
    Ref(String),
}

impl AppKey {
    /// The key the daemon shards applications by: the id, or `ref:<name>` for an application
    /// declared by an Application manifest (the same before and after it is created).
    pub fn shard_key(&self) -> String {
        match self {
            AppKey::Id(id) => id.clone(),
            AppKey::Ref(name) => format!("ref:{name}"),
        }
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppKey::Id(id) => f.write_str(id),
            AppKey::Ref(name) => write!(f, "{name} (Application manifest)"),
        }
    }
}

/// Where a manifest was written (its line is worked out only when shown).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: String,
    pub doc: usize,
    source: std::sync::Arc<crate::manifests::manifest::SourceText>,
}

impl Origin {
    fn of(d: &Document) -> Self {
        Self {
            file: d.file.clone(),
            doc: d.doc,
            source: d.source.clone(),
        }
    }

    pub fn line(&self) -> usize {
        self.source.locate(self.doc, "").0
    }

    /// A located error at `path` (a field path of this document).
    pub fn error(&self, path: &str, message: String) -> crate::manifests::manifest::ManifestError {
        let (line, column) = self.source.locate(self.doc, path);
        crate::manifests::manifest::ManifestError {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message,
        }
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.doc == other.doc
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSegment {
    /// `metadata.name`, the stable key.
    pub name: String,
    /// The definition; `SourceSegments` entries may still name other manifests by `Ref`.
    /// `tags` holds the user's tags only (ownership tags are added by the plan).
    pub spec: WriteSegmentRequest,
    pub protect: bool,
    pub adopt: Option<String>,
    /// Names of the segments of this application that this one builds on.
    pub depends_on: Vec<String>,
    pub origin: Origin,
    /// Set for an ImportedSegment: where its endpoints come from.
    pub import: Option<ImportSpec>,
}

/// An imported segment's source, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSpec {
    pub source: crate::manifests::manifest::ImportSource,
    /// What the server reads: `s3://…`, or `file:///…` for a path (made canonical by
    /// [`crate::manifests::workspace::resolve_sources`]; until then, as the manifest gives it).
    pub url: String,
    /// The local file, for a path: read by `estimate` and fingerprinted here. Joined to the
    /// manifest's folder here; made canonical, inside the folder, by `resolve_sources`.
    pub local: Option<std::path::PathBuf>,
    /// The source's fingerprint (its S3 ETag, or the MD5 of the file, as S3 gives a
    /// single-part object), once [`crate::audience::sources::fingerprint`] has looked; `Err`: why it
    /// could not be read.
    pub etag: Option<Result<String, String>>,
}

impl ImportSpec {
    fn of(d: &Document) -> Option<Self> {
        let source = d.manifest.source.clone()?;
        let (url, local) = if source.url.starts_with("s3://") {
            (source.url.clone(), None)
        } else {
            let path = match source.url.strip_prefix("file://") {
                Some(p) => std::path::PathBuf::from(p),
                None => std::path::Path::new(&d.file)
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(&source.url),
            };
            // Made canonical, and checked to lie inside the manifest folder, by
            // `workspace::resolve_sources` (which reads the disk; this does not).
            (file_url(&path), Some(path))
        };
        Some(Self {
            source,
            url,
            local,
            etag: None,
        })
    }
}

/// The `file://` URL the server is sent for a local source.
pub fn file_url(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    let encoded: String = percent_encoding::utf8_percent_encode(&text, FILE_URL).collect();
    format!("file://{encoded}")
}

/// What a file URL's path keeps as is.
const FILE_URL: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'#')
    .add(b'?');

#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredApp {
    pub name: String,
    pub spec: ApplicationSpec,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub key: AppKey,
    /// Set when an Application manifest declares this application.
    pub declared: Option<DeclaredApp>,
    /// In dependency order: every segment comes after the segments it builds on.
    pub segments: Vec<DesiredSegment>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredState {
    /// Sorted by key.
    pub apps: Vec<DesiredApp>,
}

impl DesiredState {
    pub fn segment_count(&self) -> usize {
        self.apps.iter().map(|a| a.segments.len()).sum()
    }

    /// A fingerprint of each application's desired state, by shard key: equal when nothing
    /// apply would act on changed (where the manifests are written does not count).
    pub fn fingerprints(&self) -> BTreeMap<String, String> {
        use sha2::{Digest, Sha256};
        self.apps
            .iter()
            .map(|a| {
                let mut h = Sha256::new();
                if let Some(d) = &a.declared {
                    h.update(d.spec.name.as_bytes());
                    h.update(serde_json::to_vec(&d.spec.tags).unwrap_or_default());
                }
                for s in &a.segments {
                    h.update(s.name.as_bytes());
                    h.update(serde_json::to_vec(&s.spec).unwrap_or_default());
                    h.update([u8::from(s.protect)]);
                    h.update(s.adopt.as_deref().unwrap_or("").as_bytes());
                    if let Some(i) = &s.import {
                        h.update(i.url.as_bytes());
                        h.update(i.source.format.as_str().as_bytes());
                        if let Some(Ok(etag)) = &i.etag {
                            h.update(etag.as_bytes());
                        }
                    }
                    h.update(b"\0");
                }
                (a.key.shard_key(), hex::encode(&h.finalize()[..12]))
            })
            .collect()
    }
}

/// Checks the documents against each other and builds the desired state, in four phases:
/// the Application manifests, the segments grouped by application, each application's
/// dependencies (with its cycles), and the desired applications in dependency order.
///
/// Errors: every cross-document mistake (duplicate names, references to nothing, cycles),
/// each located at the field concerned, sorted by file and line.
pub fn build(docs: &[Document]) -> Result<DesiredState, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let declared = declared_applications(docs, &mut errors);
    let by_app = segments_by_application(docs, &declared, &mut errors);
    let mut apps = Vec::new();
    for (key, segments) in &by_app {
        let deps = dependencies(key, segments, &mut errors);
        let (order, cyclic) = topological(&deps);
        report_cycles(segments, &deps, &cyclic, &mut errors);
        report_depth(segments, &deps, &order, &mut errors);
        apps.push(desired_app(key, segments, &deps, order, &declared));
    }
    if errors.is_empty() {
        Ok(DesiredState { apps })
    } else {
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

/// A folder's segment manifests of one application, by `metadata.name`.
type Segments<'a> = BTreeMap<String, &'a Document>;

/// A segment's names → the names of the segments of its application it builds on.
type Dependencies<'a> = BTreeMap<&'a str, BTreeSet<&'a str>>;

/// Phase 1: the Application manifests by name (the first of a repeated name wins, the
/// others are errors).
fn declared_applications<'a>(
    docs: &'a [Document],
    errors: &mut Vec<ManifestError>,
) -> BTreeMap<String, &'a Document> {
    let mut declared: BTreeMap<String, &Document> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.manifest.kind == Kind::Application) {
        let name = &d.manifest.metadata.name;
        if let Some(first) = declared.get(name) {
            errors.push(d.error(
                "metadata.name",
                format!(
                    "duplicate Application name {name:?}; first declared at {}:{}",
                    first.file,
                    first.line()
                ),
            ));
        } else {
            declared.insert(name.clone(), d);
        }
    }
    declared
}

/// Phase 2: the segment manifests grouped by the application they name (every declared
/// application has its group, if empty); an `applicationRef` to nothing and a repeated name
/// within an application are errors.
fn segments_by_application<'a>(
    docs: &'a [Document],
    declared: &BTreeMap<String, &'a Document>,
    errors: &mut Vec<ManifestError>,
) -> BTreeMap<AppKey, Segments<'a>> {
    let mut by_app: BTreeMap<AppKey, Segments<'a>> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.manifest.kind.is_segment()) {
        let md = &d.manifest.metadata;
        let key = match (&md.application, &md.application_ref) {
            (Some(id), None) => AppKey::Id(id.clone()),
            (None, Some(r)) => {
                if !declared.contains_key(r) {
                    let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                    errors.push(d.error(
                        "metadata.applicationRef",
                        not_found_message("Application manifest", r, &known),
                    ));
                    continue;
                }
                AppKey::Ref(r.clone())
            }
            _ => continue, // already reported by the document's own rules
        };
        let segments = by_app.entry(key.clone()).or_default();
        if let Some(first) = segments.get(&md.name) {
            errors.push(d.error(
                "metadata.name",
                format!(
                    "duplicate name {:?} in application {key}; first defined at {}:{}",
                    md.name,
                    first.file,
                    first.line()
                ),
            ));
            continue;
        }
        segments.insert(md.name.clone(), d);
    }
    for name in declared.keys() {
        by_app.entry(AppKey::Ref(name.clone())).or_default();
    }
    by_app
}

/// Phase 3: what each segment of one application builds on. A `Ref` to nothing, a segment
/// building on itself, and two imported bases in one list are errors.
fn dependencies<'a>(
    key: &AppKey,
    segments: &'a Segments<'a>,
    errors: &mut Vec<ManifestError>,
) -> Dependencies<'a> {
    let names: Vec<&str> = segments.keys().map(String::as_str).collect();
    let mut deps: Dependencies<'a> = BTreeMap::new();
    for (name, d) in segments {
        one_imported_base_per_list(d, segments, errors);
        let entry = deps.entry(name.as_str()).or_default();
        for (path, r) in refs(d) {
            if segments.contains_key(r) {
                if r != name {
                    entry.insert(r);
                } else {
                    errors.push(d.error(&path, "a segment cannot build on itself"));
                }
            } else {
                errors.push(d.error(
                    &path,
                    not_found_message(&format!("segment in application {key}"), r, &names),
                ));
            }
        }
    }
    deps
}

/// Pinpoint allows one imported base segment per SourceSegments list.
fn one_imported_base_per_list(
    d: &Document,
    segments: &Segments<'_>,
    errors: &mut Vec<ManifestError>,
) {
    let groups = d
        .manifest
        .spec
        .segment_groups
        .iter()
        .flat_map(|g| g.groups.iter().flatten());
    for (gi, g) in groups.enumerate() {
        let imported: Vec<usize> = g
            .source_segments
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, s)| {
                s.reference
                    .as_ref()
                    .and_then(|r| segments.get(r))
                    .is_some_and(|t| t.manifest.kind == Kind::ImportedSegment)
            })
            .map(|(i, _)| i)
            .collect();
        if imported.len() > 1 {
            errors.push(d.error(
                &format!("spec.SegmentGroups.Groups[{gi}].SourceSegments[{}].Ref", imported[1]),
                "a SourceSegments list may name at most one imported segment (Pinpoint's rule); combine the files into one import, or use another group",
            ));
        }
    }
}

/// Every cycle among `cyclic` segments, located at the first `Ref` of its smallest member
/// that stays in the cycle.
fn report_cycles(
    segments: &Segments<'_>,
    deps: &Dependencies<'_>,
    cyclic: &BTreeSet<&str>,
    errors: &mut Vec<ManifestError>,
) {
    for cycle in cycles(deps, cyclic) {
        let d = segments[cycle[0]];
        let path = refs(d)
            .into_iter()
            .find(|(_, r)| cycle.contains(r))
            .map(|(p, _)| p)
            .unwrap_or_else(|| "metadata.name".into());
        let mut shown: Vec<&str> = cycle.clone();
        shown.push(cycle[0]);
        errors.push(d.error(
            &path,
            format!(
                "Ref cycle: {}; a segment cannot build on itself through others",
                shown.join(" → ")
            ),
        ));
    }
}

/// Every segment that builds on more than [`crate::model::MAX_BASE_DEPTH`] levels
/// of base segments (which no estimate or impact would follow), located at its first `Ref`
/// to the deepest of its bases. `order` is the acyclic segments, bases first.
fn report_depth(
    segments: &Segments<'_>,
    deps: &Dependencies<'_>,
    order: &[&str],
    errors: &mut Vec<ManifestError>,
) {
    let max = crate::model::MAX_BASE_DEPTH;
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for name in order {
        let deepest = deps[name]
            .iter()
            .filter_map(|b| levels.get(b).map(|l| (*l, *b)))
            .max();
        let level = deepest.map_or(0, |(l, _)| l + 1);
        levels.insert(name, level);
        if level > max {
            let Some((_, base)) = deepest else { continue };
            let d = segments[*name];
            // Each one past the limit is said once: at the first, where the chain crosses it.
            if level == max + 1 {
                let path = refs(d)
                    .into_iter()
                    .find(|(_, r)| *r == base)
                    .map(|(p, _)| p)
                    .unwrap_or_else(|| "metadata.name".into());
                errors.push(d.error(
                    &path,
                    format!(
                        "{name} builds on {level} levels of base segments; at most {max} are evaluated (by estimate, plan --endpoints and the server's exports)"
                    ),
                ));
            }
        }
    }
}

/// Phase 4: one application as desired, its segments in `order` (dependency order).
fn desired_app(
    key: &AppKey,
    segments: &Segments<'_>,
    deps: &Dependencies<'_>,
    order: Vec<&str>,
    declared: &BTreeMap<String, &Document>,
) -> DesiredApp {
    let segments = order
        .into_iter()
        .map(|name| {
            let d = segments[name];
            DesiredSegment {
                name: name.to_string(),
                spec: d.manifest.spec.clone(),
                protect: d.manifest.metadata.protect,
                adopt: d.manifest.metadata.adopt.clone(),
                depends_on: deps[name].iter().map(|s| s.to_string()).collect(),
                origin: Origin::of(d),
                import: ImportSpec::of(d),
            }
        })
        .collect();
    let declared = match key {
        AppKey::Ref(name) => declared.get(name).map(|d| DeclaredApp {
            name: name.clone(),
            spec: d.manifest.application_spec(),
            origin: Origin::of(d),
        }),
        AppKey::Id(_) => None,
    };
    DesiredApp {
        key: key.clone(),
        declared,
        segments,
    }
}

fn not_found_message(what: &str, name: &str, known: &[&str]) -> String {
    let mut msg = format!("no {what} is named {name:?}");
    if let Some(best) = closest(name, known) {
        msg.push_str(&format!(" (did you mean {best}?)"));
    } else if !known.is_empty() && known.len() <= 10 {
        msg.push_str(&format!("; known: {}", known.join(", ")));
    }
    msg
}

/// Every `Ref` in a document's SourceSegments, with its field path.
fn refs(d: &Document) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(groups) = &d.manifest.spec.segment_groups {
        for (gi, g) in groups.groups.iter().flatten().enumerate() {
            for (si, s) in g.source_segments.iter().flatten().enumerate() {
                if let Some(r) = &s.reference {
                    out.push((
                        format!("spec.SegmentGroups.Groups[{gi}].SourceSegments[{si}].Ref"),
                        r.as_str(),
                    ));
                }
            }
        }
    }
    out
}

/// Kahn's algorithm, smallest name first for a stable order. Returns the order of the
/// segments outside cycles, and the set of those in (or behind) a cycle.
fn topological<'a>(
    deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
) -> (Vec<&'a str>, BTreeSet<&'a str>) {
    let mut remaining: BTreeMap<&str, usize> = deps.iter().map(|(k, v)| (*k, v.len())).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in deps {
        for d in v {
            dependents.entry(*d).or_default().push(*k);
        }
    }
    let mut ready: BTreeSet<&str> = remaining
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::new();
    while let Some(next) = ready.pop_first() {
        order.push(next);
        remaining.remove(next);
        for dep in dependents.get(next).into_iter().flatten() {
            if let Some(n) = remaining.get_mut(dep) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(dep);
                }
            }
        }
    }
    (order, remaining.keys().copied().collect())
}

/// The distinct cycles among `cyclic` nodes, each starting at its smallest member.
fn cycles<'a>(
    deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    cyclic: &BTreeSet<&'a str>,
) -> Vec<Vec<&'a str>> {
    let mut found: BTreeSet<Vec<&str>> = BTreeSet::new();
    for start in cyclic {
        // Depth-first search for a path back to `start` through cyclic nodes.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in deps.get(node).into_iter().flatten() {
                if next == start {
                    let min = path
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, n)| **n)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    let mut rotated = path[min..].to_vec();
                    rotated.extend_from_slice(&path[..min]);
                    found.insert(rotated);
                } else if cyclic.contains(next) && visited.insert(*next) {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::manifest::{load_sources, Source};

    fn build_text(text: &str) -> Result<DesiredState, Vec<String>> {
        let l = load_sources(&[Source {
            name: "m.yaml".into(),
            bytes: text.as_bytes().to_vec().into(),
        }]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        build(&l.documents).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    fn seg(name: &str, refs: &[&str]) -> String {
        let mut s = format!("---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  applicationRef: app\nspec:\n  Name: {name}\n");
        if !refs.is_empty() {
            s.push_str("  SegmentGroups:\n    Groups:\n      - SourceSegments:\n");
            for r in refs {
                s.push_str(&format!("          - Ref: {r}\n"));
            }
        }
        s
    }

    const APP: &str = "apiVersion: segmentctl/v1\nkind: Application\nmetadata:\n  name: app\nspec:\n  Name: App\n";

    #[test]
    fn segments_come_after_the_segments_they_build_on() {
        let text = format!(
            "{APP}{}{}{}",
            seg("c", &["b", "a"]),
            seg("b", &["a"]),
            seg("a", &[])
        );
        let state = build_text(&text).unwrap();
        let names: Vec<_> = state.apps[0]
            .segments
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(state.apps[0].declared.as_ref().unwrap().spec.name, "App");
    }

    #[test]
    fn a_cycle_names_every_member() {
        let text = format!(
            "{APP}{}{}{}",
            seg("a", &["b"]),
            seg("b", &["c"]),
            seg("c", &["a"])
        );
        let errs = build_text(&text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].ends_with(
                "Ref cycle: a → b → c → a; a segment cannot build on itself through others"
            ),
            "{errs:?}"
        );
    }

    /// 32 levels of bases are evaluated; a segment on 33 is an error at its `Ref`, said
    /// once (not again for the segments built on it).
    #[test]
    fn a_chain_of_bases_deeper_than_the_evaluator_follows_is_an_error() {
        let chain = |n: usize| {
            let mut text = format!("{APP}{}", seg("s0", &[]));
            for i in 1..=n {
                text.push_str(&seg(&format!("s{i}"), &[&format!("s{}", i - 1)]));
            }
            text
        };
        assert!(build_text(&chain(32)).is_ok());
        let errs = build_text(&chain(34)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].ends_with(
                "spec.SegmentGroups.Groups[0].SourceSegments[0].Ref: s33 builds on 33 levels of base segments; at most 32 are evaluated (by estimate, plan --endpoints and the server's exports)"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn refs_and_application_refs_to_nothing_are_located_errors() {
        let text = format!(
            "{APP}{}{}",
            seg("a", &["vpi"]),
            seg("vip", &[]).replace("applicationRef: app", "applicationRef: apps")
        );
        let errs = build_text(&text).unwrap_err();
        assert_eq!(
            errs,
            [
                "m.yaml:18:13: spec.SegmentGroups.Groups[0].SourceSegments[0].Ref: no segment in application app (Application manifest) is named \"vpi\"; known: a",
                "m.yaml:24:3: metadata.applicationRef: no Application manifest is named \"apps\" (did you mean app?)",
            ]
        );
    }

    #[test]
    fn a_local_source_is_joined_to_its_manifest_folder_without_reading_the_disk() {
        // Relative to a folder that does not exist: only `workspace::resolve_sources`, the
        // I/O side, makes it canonical (and refuses it).
        let text = "apiVersion: segmentctl/v1\nkind: ImportedSegment\nmetadata:\n  name: vip\n  application: 0123456789abcdef0123456789abcdef\nspec:\n  Name: VIP\nsource:\n  url: data/vip.csv\n  format: CSV\n";
        let l = load_sources(&[Source {
            name: "no-such-folder/segments/m.yaml".into(),
            bytes: text.as_bytes().to_vec().into(),
        }]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let state = build(&l.documents).unwrap();
        let imp = state.apps[0].segments[0].import.as_ref().unwrap();
        let path = std::path::Path::new("no-such-folder/segments/data/vip.csv");
        assert_eq!(imp.local.as_deref(), Some(path));
        assert_eq!(imp.url, "file://no-such-folder/segments/data/vip.csv");
    }

    #[test]
    fn duplicate_names_point_at_the_first_definition() {
        let text = format!("{APP}{}{}", seg("a", &[]), seg("a", &[]));
        let errs = build_text(&text).unwrap_err();
        assert_eq!(errs, ["m.yaml:19:3: metadata.name: duplicate name \"a\" in application app (Application manifest); first defined at m.yaml:8"]);
    }
}
