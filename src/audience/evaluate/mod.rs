//! The audience evaluator: which endpoint records belong to which segments. Pure.
//!
//! Segments are compiled once into a [`Program`]: names and ids resolved to node numbers,
//! attribute and metric names to slots, dates parsed, defaults filled. A record is then read
//! straight into those slots ([`Program::read`], unused fields only checked, never stored)
//! and every node evaluated once per record, base segments before the segments built on
//! them ([`Program::run`]).
//!
//! Semantics follow the Segment resource page and Pinpoint's model; where Pinpoint is silent
//! the rules chosen here are (and are pinned by tests):
//! - comparisons of values are exact (case-sensitive);
//! - a missing field or attribute never satisfies INCLUSIVE, CONTAINS, BEFORE, AFTER, ON,
//!   BETWEEN, a metric or a GPS criterion, and always satisfies EXCLUSIVE and NOT_BETWEEN
//!   (it is not among the excluded values, nor between the bounds); an empty list of values
//!   counts as missing;
//! - `DeviceType` has no endpoint field: INCLUSIVE matches no endpoint, EXCLUSIVE all;
//! - `Channel` compares with the endpoint's `ChannelType`;
//! - BEFORE / AFTER are strict; BETWEEN includes both bounds; ON compares UTC calendar dates;
//!   attribute values that are not ISO-8601 instants never satisfy a date criterion;
//! - GPS distance is great-circle (haversine, mean Earth radius 6,371.0088 km), within the
//!   range inclusive; without `RangeInKilometers` the range is 50 km;
//! - recency uses the endpoint's `EffectiveDate` (its last update): ACTIVE when it lies in
//!   `[as_of − duration, as_of]`, INACTIVE otherwise (including when it is missing);
//! - in a group, `Type` (default ALL) combines its `Dimensions` entries and `SourceType`
//!   (default ANY) its base segments (ALL, ANY, NONE; an empty list restricts nothing);
//!   `Include` (default ALL) combines groups; a base segment's `Version` is not looked at
//!   (the current definition counts);
//! - a base segment that cannot be found matches no endpoint;
//! - an imported segment holds the endpoints whose `Id` it lists, and every endpoint of
//!   each `User.UserId` it lists (Pinpoint's user guide on imports).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::model::validate::parse_instant;
use crate::model::{
    AttributeDimension, AttributeType, ComparisonOperator, DimensionType, Duration,
    GpsPointDimension, Include, RecencyType, SegmentDimensions, SegmentReference, SetDimension,
    WriteSegmentRequest,
};

mod instant;
pub mod profiles;
mod record;
pub mod sql;

pub use instant::instant_nanos;

pub use record::{NotARecord, Record};

/// The range assumed when a GPSPoint dimension gives none.
pub const DEFAULT_GPS_RANGE_KM: f64 = 50.0;
const EARTH_RADIUS_KM: f64 = 6371.0088;
const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Where segment definitions are found: by key, with `Ref` naming a key and `Id` mapped to
/// one through `key_of_id`.
#[derive(Debug, Clone, Default)]
pub struct Catalog<'d> {
    pub segments: BTreeMap<String, &'d WriteSegmentRequest>,
    pub key_of_id: BTreeMap<String, String>,
    /// Imported segments by key: their members, not a definition.
    pub imported: BTreeMap<String, Arc<Members>>,
}

/// Who an imported segment holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// Endpoint ids.
    pub ids: HashSet<Box<str>>,
    /// User ids: every endpoint of each is a member.
    pub users: HashSet<Box<str>>,
}

impl Members {
    fn holds(&self, record: &Record<'_>) -> bool {
        record.id().is_some_and(|id| self.ids.contains(id))
            || record.user_id().is_some_and(|u| self.users.contains(u))
    }
}

impl<'d> Catalog<'d> {
    /// Segments known by name, each `Id` found through `key_of_id`.
    pub fn of(segments: &'d BTreeMap<String, WriteSegmentRequest>) -> Self {
        Self {
            segments: segments.iter().map(|(k, v)| (k.clone(), v)).collect(),
            key_of_id: BTreeMap::new(),
            imported: BTreeMap::new(),
        }
    }
}

/// A node: one compiled segment. Nodes only refer to nodes before them.
pub type NodeId = usize;

/// Compiled segments, ready to be run against records.
#[derive(Debug)]
pub struct Program {
    nodes: Vec<Node>,
    schema: Schema,
    as_of: i128,
    /// (catalog number, key) → node, so a segment shared as a base compiles once.
    compiled: HashMap<(usize, String), NodeId>,
    /// (catalog number, key) of segments named but not found: they match nothing.
    unknown: Vec<(usize, String)>,
    /// (catalog number, key) of segments reached deeper than [`MAX_DEPTH`] bases down: the
    /// caller refuses the run ([`Program::refuse_too_deep`]).
    too_deep: Vec<(usize, String)>,
}

/// Where a list slot's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An endpoint's `Attributes` (`user`: `User.UserAttributes`) entry: a list of strings.
    Attributes { user: bool },
    /// A profile's field, by its path (`FirstName`, `Address.City`): at most one value.
    ProfileField,
    /// A profile's `Attributes` entry: at most one value.
    ProfileAttribute,
    /// A profile's `Attributes` entry read as a list (see `model::profiles::attribute_list`).
    ProfileAttributeList,
}

impl Source {
    fn is_profile(self) -> bool {
        !matches!(self, Source::Attributes { .. })
    }
}

/// What a record must keep: the attribute lists and metrics some criterion reads.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    /// Whether records are Customer Profiles profiles (else Pinpoint endpoints).
    profiles: bool,
    /// Where each list slot's values come from, one slot per source and name.
    lists: Vec<(Source, Box<str>)>,
    /// Per list slot: whether a date criterion reads it (its values are parsed as instants).
    dated: Vec<bool>,
    /// Per list slot: whether its values are kept as text (a CONTAINS criterion reads them,
    /// or an INCLUSIVE or EXCLUSIVE one whose values did not fit in `list_words`).
    kept: Vec<bool>,
    /// Per list slot, and per field: the values INCLUSIVE and EXCLUSIVE criteria compare
    /// with. A record marks which of them it holds, once, and the criteria test bits.
    list_words: Vec<Words>,
    field_words: [Words; FIELDS],
    metrics: Vec<Box<str>>,
    /// Whether a recency criterion reads `EffectiveDate`.
    recency: bool,
    /// Whether a GPS criterion reads the position.
    position: bool,
}

impl Schema {
    fn list(&mut self, user: bool, name: &str) -> usize {
        self.list_of(Source::Attributes { user }, name)
    }

    fn list_of(&mut self, source: Source, name: &str) -> usize {
        self.lists
            .iter()
            .position(|(s, n)| *s == source && &**n == name)
            .unwrap_or_else(|| {
                self.lists.push((source, name.into()));
                self.dated.push(false);
                self.kept.push(false);
                self.list_words.push(Words::default());
                self.lists.len() - 1
            })
    }

    fn metric(&mut self, name: &str) -> usize {
        self.metrics
            .iter()
            .position(|n| &**n == name)
            .unwrap_or_else(|| {
                self.metrics.push(name.into());
                self.metrics.len() - 1
            })
    }

    pub(crate) fn list_slot(&self, user: bool, name: &str) -> Option<usize> {
        let source = Source::Attributes { user };
        self.lists
            .iter()
            .position(|(s, n)| *s == source && record::same_bytes(n.as_bytes(), name.as_bytes()))
    }

    pub(crate) fn metric_slot(&self, name: &str) -> Option<usize> {
        self.metrics
            .iter()
            .position(|n| record::same_bytes(n.as_bytes(), name.as_bytes()))
    }
}

/// The values that criteria compare a field or list with, at most [`Words::MAX`]. A value
/// read from a record is looked up once and becomes a word with one bit for the value it
/// equals; the criteria then test bits.
#[derive(Debug, Default)]
pub(crate) struct Words(Vec<Box<str>>);

impl Words {
    const MAX: usize = 64;

    /// The bits of `values`, added as needed; `None` when they do not all fit.
    fn bits(&mut self, values: &[String]) -> Option<u64> {
        let new = |w: &Self, v: &str| !w.0.iter().any(|x| **x == *v);
        let mut added: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| new(self, v))
            .collect();
        added.sort_unstable();
        added.dedup();
        if self.0.len() + added.len() > Self::MAX {
            return None;
        }
        self.0.extend(added.into_iter().map(Box::from));
        Some(values.iter().fold(0, |bits, v| bits | self.mark(v)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Which words `v` is (one bit, or none).
    #[inline]
    pub(crate) fn mark(&self, v: &str) -> u64 {
        self.0.iter().position(|x| same(x, v)).map_or(0, |k| 1 << k)
    }
}

/// The endpoint fields a set dimension compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Channel = 0,
    AppVersion = 1,
    Make = 2,
    Model = 3,
    Platform = 4,
    Country = 5,
}
pub(crate) const FIELDS: usize = 6;

#[derive(Debug)]
enum Node {
    /// Every criterion must hold (none: every endpoint).
    All(Vec<Criterion>),
    Groups {
        include: Include,
        groups: Vec<Group>,
    },
    /// An imported segment: its members.
    Members(Arc<Members>),
    /// Unknown, or a base segment of itself.
    Never,
}

#[derive(Debug)]
struct Group {
    source_type: Include,
    sources: Vec<NodeId>,
    group_type: Include,
    dimensions: Vec<Vec<Criterion>>,
}

#[derive(Debug)]
enum Criterion {
    Constant(bool),
    /// The field is one of `values` (`bits`: as words of the field, when they fit), or
    /// with `exclusive`, it is not.
    Set {
        field: Field,
        values: Box<[Box<str>]>,
        bits: Option<u64>,
        exclusive: bool,
    },
    /// Some value of the slot is one of `values` (`bits`: as words of the slot, when they
    /// fit), or with `exclusive`, none is.
    Listed {
        slot: usize,
        values: Box<[Box<str>]>,
        bits: Option<u64>,
        exclusive: bool,
    },
    /// Some value of the slot contains one of `values` (`finders`: their searchers, built
    /// once).
    Contains {
        slot: usize,
        values: Box<[Box<str>]>,
        finders: Box<[memchr::memmem::Finder<'static>]>,
    },
    /// Some value of the slot lies in `[lo, hi]` (nanoseconds since the epoch), or with
    /// `negate`, none does.
    Dated {
        slot: usize,
        lo: i128,
        hi: i128,
        negate: bool,
    },
    Metric {
        slot: usize,
        op: ComparisonOperator,
        value: f64,
    },
    /// Some value of the slot starts (`end`: ends) with one of `values`.
    Affix {
        slot: usize,
        values: Box<[Box<str>]>,
        end: bool,
    },
    /// Some value of the slot is a number (`-?DIGITS[.DIGITS]`) that compares true with one
    /// of `values`.
    Compared {
        slot: usize,
        op: ComparisonOperator,
        values: Box<[f64]>,
    },
    /// Every one of `values` is among the slot's values.
    ListedAll {
        slot: usize,
        values: Box<[Box<str>]>,
    },
    Gps {
        from: Point,
        range: f64,
    },
    /// `EffectiveDate` in `[lo, hi]` (ACTIVE), or not (INACTIVE).
    Recency {
        lo: i128,
        hi: i128,
        active: bool,
    },
}

/// The date criteria, as both APIs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Temporal {
    Before,
    After,
    On,
    Between,
    NotBetween,
}

/// How deep base segments (or Customer Profiles sources) may nest: a guard, as manifests
/// with cycles do not validate and the server refuses deeper chains; one reached deeper is
/// reported by [`Program::too_deep`].
pub const MAX_DEPTH: usize = crate::model::MAX_BASE_DEPTH;

impl Program {
    /// An empty program evaluating recency relative to `as_of`.
    pub fn new(as_of: OffsetDateTime) -> Self {
        Self {
            nodes: Vec::new(),
            schema: Schema::default(),
            as_of: as_of.unix_timestamp_nanos(),
            compiled: HashMap::new(),
            unknown: Vec::new(),
            too_deep: Vec::new(),
        }
    }

    /// Compiles the segment `key` of `catalog` (with its base segments) and returns its node.
    /// `scope` tells catalogs apart: the same key in the same scope compiles once. An
    /// unknown key gives a node that matches nothing.
    pub fn add(&mut self, scope: usize, catalog: &Catalog<'_>, key: &str) -> NodeId {
        self.segment(scope, catalog, key, 0)
    }

    /// The keys of catalog `scope` that were named (as a segment or a base) but not found.
    pub fn unknown(&self, scope: usize) -> impl Iterator<Item = &str> {
        self.unknown
            .iter()
            .filter(move |(s, _)| *s == scope)
            .map(|(_, k)| k.as_str())
    }

    /// `Err` naming the first key (of any catalog) reached through more than [`MAX_DEPTH`]
    /// bases or sources: its node matches nothing, which is not what it holds, so a caller
    /// refuses to answer rather than count it.
    pub fn refuse_too_deep(&self) -> Result<(), String> {
        match self.too_deep.first().map(|(_, k)| k) {
            Some(key) => Err(format!(
                "{} is reached through more than {MAX_DEPTH} levels of base segments or sources, more than are evaluated",
                crate::text::safe(key)
            )),
            None => Ok(()),
        }
    }

    /// How many nodes [`Program::run`] fills.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn segment(&mut self, scope: usize, catalog: &Catalog<'_>, key: &str, depth: usize) -> NodeId {
        if let Some(id) = self.compiled.get(&(scope, key.to_string())) {
            return *id;
        }
        if let Some(m) = catalog.imported.get(key) {
            let id = self.push(Node::Members(m.clone()));
            self.compiled.insert((scope, key.to_string()), id);
            return id;
        }
        let Some(def) = catalog.segments.get(key) else {
            self.unknown.push((scope, key.to_string()));
            return self.push(Node::Never);
        };
        if depth > MAX_DEPTH {
            self.too_deep.push((scope, key.to_string()));
            return self.push(Node::Never);
        }
        let node = if let Some(d) = &def.dimensions {
            Node::All(self.dimensions(d))
        } else if let Some((groups, include)) = def
            .segment_groups
            .as_ref()
            .and_then(|g| g.groups.as_ref().map(|gs| (gs, g.include)))
        {
            let groups = groups
                .iter()
                .map(|g| Group {
                    source_type: g.source_type.unwrap_or(Include::Any),
                    sources: g
                        .source_segments
                        .iter()
                        .flatten()
                        .map(|r| self.reference(scope, catalog, r, depth))
                        .collect(),
                    group_type: g.group_type.unwrap_or(Include::All),
                    dimensions: g
                        .dimensions
                        .iter()
                        .flatten()
                        .map(|d| self.dimensions(d))
                        .collect(),
                })
                .collect();
            Node::Groups {
                include: include.unwrap_or(Include::All),
                groups,
            }
        } else {
            Node::All(Vec::new()) // no criteria: every endpoint
        };
        let id = self.push(node);
        self.compiled.insert((scope, key.to_string()), id);
        id
    }

    fn reference(
        &mut self,
        scope: usize,
        catalog: &Catalog<'_>,
        r: &SegmentReference,
        depth: usize,
    ) -> NodeId {
        let key = r.reference.clone().or_else(|| {
            r.id.as_ref()
                .and_then(|id| catalog.key_of_id.get(id).cloned())
        });
        match key {
            Some(key) => self.segment(scope, catalog, &key, depth + 1),
            None => self.push(Node::Never),
        }
    }

    fn dimensions(&mut self, d: &SegmentDimensions) -> Vec<Criterion> {
        let mut out = Vec::new();
        for (user, attrs) in [(false, &d.attributes), (true, &d.user_attributes)] {
            for (name, a) in attrs.iter().flatten() {
                let slot = self.schema.list(user, name);
                out.push(self.attribute(slot, a));
            }
        }
        for (name, m) in d.metrics.iter().flatten() {
            out.push(Criterion::Metric {
                slot: self.schema.metric(name),
                op: m.comparison_operator,
                value: m.value,
            });
        }
        if let Some(demo) = &d.demographic {
            let sets = [
                (&demo.app_version, Some(Field::AppVersion)),
                (&demo.channel, Some(Field::Channel)),
                (&demo.device_type, None),
                (&demo.make, Some(Field::Make)),
                (&demo.model, Some(Field::Model)),
                (&demo.platform, Some(Field::Platform)),
            ];
            for (dim, field) in sets {
                if let Some(s) = dim {
                    out.push(self.set(s, field));
                }
            }
        }
        if let Some(loc) = &d.location {
            if let Some(c) = &loc.country {
                out.push(self.set(c, Some(Field::Country)));
            }
            if let Some(g) = &loc.gps_point {
                self.schema.position = true;
                out.push(gps(g));
            }
        }
        if let Some(r) = d.behavior.as_ref().and_then(|b| b.recency.as_ref()) {
            self.schema.recency = true;
            out.push(Criterion::Recency {
                lo: self.as_of - window(r.duration),
                hi: self.as_of,
                active: r.recency_type == RecencyType::Active,
            });
        }
        out
    }

    fn set(&mut self, s: &SetDimension, field: Option<Field>) -> Criterion {
        let exclusive = s.dimension_type == Some(DimensionType::Exclusive);
        match field {
            Some(field) => Criterion::Set {
                field,
                values: s.values.iter().map(|v| v.as_str().into()).collect(),
                bits: self.schema.field_words[field as usize].bits(&s.values),
                exclusive,
            },
            None => Criterion::Constant(exclusive),
        }
    }

    fn attribute(&mut self, slot: usize, a: &AttributeDimension) -> Criterion {
        let values = || a.values.iter().map(|v| v.as_str().into()).collect();
        let bound = |i: usize| {
            a.values
                .get(i)
                .and_then(|v| parse_instant(v))
                .map(OffsetDateTime::unix_timestamp_nanos)
        };
        if a.attribute_type == Some(AttributeType::Contains) {
            self.schema.kept[slot] = true;
        }
        match a.attribute_type.unwrap_or(AttributeType::Inclusive) {
            AttributeType::Inclusive | AttributeType::Exclusive => self.listed(
                slot,
                &a.values,
                a.attribute_type == Some(AttributeType::Exclusive),
            ),
            AttributeType::Contains => Criterion::Contains {
                slot,
                values: values(),
                finders: a
                    .values
                    .iter()
                    .map(|v| memchr::memmem::Finder::new(v.as_bytes()).into_owned())
                    .collect(),
            },
            AttributeType::Before => self.dated(slot, Temporal::Before, bound),
            AttributeType::After => self.dated(slot, Temporal::After, bound),
            AttributeType::On => self.dated(slot, Temporal::On, bound),
            AttributeType::Between => self.dated(slot, Temporal::Between, bound),
            AttributeType::NotBetween => self.dated(slot, Temporal::NotBetween, bound),
        }
    }

    /// Some value of the slot is one of `values` (`exclusive`: none is).
    fn listed(&mut self, slot: usize, values: &[String], exclusive: bool) -> Criterion {
        let bits = self.schema.list_words[slot].bits(values);
        self.schema.kept[slot] |= bits.is_none();
        Criterion::Listed {
            slot,
            values: values.iter().map(|v| v.as_str().into()).collect(),
            bits,
            exclusive,
        }
    }

    /// A date criterion on the slot; `bound(i)` is its `i`th value as an instant.
    fn dated(
        &mut self,
        slot: usize,
        kind: Temporal,
        bound: impl Fn(usize) -> Option<i128>,
    ) -> Criterion {
        let (lo, hi, negate) = match kind {
            // Strict: the instant itself is excluded.
            Temporal::Before => (Some(i128::MIN), bound(0).map(|b| b - 1), false),
            Temporal::After => (bound(0).map(|b| b + 1), Some(i128::MAX), false),
            Temporal::On => {
                let day = bound(0).map(|b| b.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY);
                (day, day.map(|d| d + NANOS_PER_DAY - 1), false)
            }
            Temporal::Between => (bound(0), bound(1), false),
            Temporal::NotBetween => (bound(0), bound(1), true),
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                self.schema.dated[slot] = true;
                Criterion::Dated {
                    slot,
                    lo,
                    hi,
                    negate,
                }
            }
            _ => Criterion::Constant(negate), // no valid bound: nothing lies within it
        }
    }

    /// Reads one record (one line) into `record`, replacing what it held. Unknown fields are
    /// ignored; known fields must have their documented type.
    pub fn read<'a>(
        &self,
        line: &'a str,
        record: &mut Record<'a>,
    ) -> Result<(), record::NotARecord> {
        self.read_bytes(line.as_bytes(), record)
    }

    /// [`Program::read`] from bytes, as they come from a file: a line that is not UTF-8 is
    /// not a record (checked only when some byte is not ASCII).
    pub fn read_bytes<'a>(
        &self,
        line: &'a [u8],
        record: &mut Record<'a>,
    ) -> Result<(), record::NotARecord> {
        if self.schema.profiles {
            return record::read_profile(&self.schema, line, record);
        }
        record::read_bytes(&self.schema, line, record)
    }

    /// A record sized for this program, to be reused across [`Program::read`]s.
    pub fn record<'a>(&self) -> Record<'a> {
        Record::new(&self.schema)
    }

    /// Evaluates every node for `record`: afterwards `out[node]` tells whether it matches.
    /// (A batch of one: [`Program::run_batch`] is the evaluator.)
    pub fn run(&self, record: &Record<'_>, out: &mut Vec<bool>) {
        let mut masks = Vec::with_capacity(self.nodes.len());
        self.run_batch(std::slice::from_ref(record), &mut masks);
        out.clear();
        out.extend(masks.iter().map(|m| m & 1 != 0));
    }

    /// Evaluates every node for up to [`BATCH`] records at once: afterwards bit `i` of
    /// `out[node]` tells whether `records[i]` matches it.
    ///
    /// Each criterion is one loop over the records (one kind of test, no dispatch per
    /// record), and only over the records still undecided: in a node of several
    /// criteria the second is tested only where the first held.
    pub fn run_batch(&self, records: &[Record<'_>], out: &mut Vec<u64>) {
        assert!(records.len() <= BATCH, "at most {BATCH} records at once");
        let all = match records.len() {
            0 => 0,
            n => u64::MAX >> (BATCH - n),
        };
        out.clear();
        out.resize(self.nodes.len(), 0);
        for i in 0..self.nodes.len() {
            let v = match &self.nodes[i] {
                Node::All(criteria) => combine(Include::All, all, criteria.len(), |k, live| {
                    criteria[k].holds(records, live)
                }),
                Node::Groups { include, groups } => {
                    combine(*include, all, groups.len(), |k, live| {
                        let g = &groups[k];
                        let live = if g.sources.is_empty() {
                            live
                        } else {
                            combine(g.source_type, live, g.sources.len(), |s, live| {
                                out[g.sources[s]] & live
                            })
                        };
                        if g.dimensions.is_empty() {
                            return live;
                        }
                        combine(g.group_type, live, g.dimensions.len(), |d, live| {
                            let d = &g.dimensions[d];
                            combine(Include::All, live, d.len(), |c, live| {
                                d[c].holds(records, live)
                            })
                        })
                    })
                }
                Node::Members(m) => each(records, all, |r| m.holds(r)),
                Node::Never => 0,
            };
            out[i] = v;
        }
    }
}

/// How many records [`Program::run_batch`] evaluates at once: a bit of a word each.
pub const BATCH: usize = 64;

/// The records of `live` (bits of `records`) for which `f` holds.
#[inline(always)]
fn each<'a>(records: &[Record<'a>], live: u64, f: impl Fn(&Record<'a>) -> bool) -> u64 {
    let mut m = 0u64;
    if live.count_ones() as usize == records.len() {
        // All of them: no branch on which.
        for (i, r) in records.iter().enumerate() {
            m |= u64::from(f(r)) << i;
        }
    } else {
        let mut bits = live;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            m |= u64::from(f(&records[i])) << i;
            bits &= bits - 1;
        }
    }
    m
}

/// Combines `n` results as `how` says, over the records of `all`. `item(k, live)` gives the
/// records of `live` that satisfy item `k`; items are asked only about records whose
/// outcome is still open, and not at all once every outcome is known.
#[inline(always)]
fn combine(how: Include, all: u64, n: usize, mut item: impl FnMut(usize, u64) -> u64) -> u64 {
    match how {
        Include::All => {
            let mut acc = all;
            for k in 0..n {
                if acc == 0 {
                    break;
                }
                acc &= item(k, acc);
            }
            acc
        }
        Include::Any | Include::None => {
            let mut acc = 0;
            for k in 0..n {
                if acc == all {
                    break;
                }
                acc |= item(k, all & !acc);
            }
            if how == Include::Any {
                acc
            } else {
                all & !acc
            }
        }
    }
}

impl Criterion {
    /// The records of `live` that satisfy this criterion: one loop per kind of test.
    fn holds(&self, records: &[Record<'_>], live: u64) -> u64 {
        match self {
            Criterion::Constant(v) => {
                if *v {
                    live
                } else {
                    0
                }
            }
            Criterion::Set {
                field,
                bits: Some(bits),
                exclusive,
                ..
            } => each(records, live, |r| {
                (r.field_marks(*field) & bits != 0) != *exclusive
            }),
            Criterion::Listed {
                slot,
                bits: Some(bits),
                exclusive,
                ..
            } => each(records, live, |r| {
                (r.list_marks(*slot) & bits != 0) != *exclusive
            }),
            Criterion::Set {
                field,
                values,
                bits: None,
                exclusive,
            } => each(records, live, |r| {
                let listed = r
                    .field(*field)
                    .is_some_and(|v| values.iter().any(|x| same(x, v)));
                listed != *exclusive
            }),
            Criterion::Listed {
                slot,
                values,
                bits: None,
                exclusive,
            } => each(records, live, |r| {
                let listed = r
                    .list(*slot)
                    .iter()
                    .any(|v| values.iter().any(|x| same(x, v)));
                listed != *exclusive
            }),
            Criterion::Contains { slot, finders, .. } => each(records, live, |r| {
                r.list(*slot)
                    .iter()
                    .any(|v| finders.iter().any(|c| c.find(v.as_bytes()).is_some()))
            }),
            Criterion::Dated {
                slot,
                lo,
                hi,
                negate,
            } => each(records, live, |r| {
                // Without branches: a list holds a few instants, and whether each lies
                // in the range is as good as random.
                let within = r
                    .instants(*slot)
                    .iter()
                    .fold(false, |within, t| within | ((lo <= t) & (t <= hi)));
                within != *negate
            }),
            Criterion::Metric { slot, op, value } => each(records, live, |r| {
                r.metric(*slot).is_some_and(|v| compare(*op, v, *value))
            }),
            Criterion::Affix { slot, values, end } => each(records, live, |r| {
                r.list(*slot).iter().any(|v| {
                    values.iter().any(|x| {
                        if *end {
                            v.ends_with(&**x)
                        } else {
                            v.starts_with(&**x)
                        }
                    })
                })
            }),
            Criterion::Compared { slot, op, values } => each(records, live, |r| {
                r.list(*slot).iter().any(|v| {
                    crate::model::profiles::is_number(v)
                        && v.parse::<f64>()
                            .is_ok_and(|n| values.iter().any(|x| compare(*op, n, *x)))
                })
            }),
            Criterion::ListedAll { slot, values } => each(records, live, |r| {
                let list = r.list(*slot);
                values.iter().all(|x| list.iter().any(|v| same(x, v)))
            }),
            Criterion::Gps { from, range } => each(records, live, |r| {
                r.position().is_some_and(|(lat, lon)| {
                    // The great-circle distance is at least the difference in latitude:
                    // when that alone (with a margin far above rounding) is beyond the
                    // range, the answer is known without the trigonometry.
                    let along_meridian = EARTH_RADIUS_KM * (lat - from.latitude).abs().to_radians();
                    along_meridian <= *range * (1.0 + 1e-9) + 1e-9
                        && from.distance_km(lat, lon) <= *range
                })
            }),
            Criterion::Recency { lo, hi, active } => each(records, live, |r| {
                r.effective_date().is_some_and(|t| (*lo <= t) & (t <= *hi)) == *active
            }),
        }
    }
}

fn gps(g: &GpsPointDimension) -> Criterion {
    Criterion::Gps {
        from: Point::new(g.coordinates.latitude, g.coordinates.longitude),
        range: g.range_in_kilometers.unwrap_or(DEFAULT_GPS_RANGE_KM),
    }
}

/// String equality that looks at the length and the first byte first: the values compared
/// are short and mostly differ at once (`US` against `CA`).
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.as_bytes().first() == b.as_bytes().first()
        && record::same_bytes(a.as_bytes(), b.as_bytes())
}

fn window(d: Duration) -> i128 {
    let hours: i128 = match d {
        Duration::Hr24 => 24,
        Duration::Day7 => 7 * 24,
        Duration::Day14 => 14 * 24,
        Duration::Day30 => 30 * 24,
    };
    hours * 3_600 * 1_000_000_000
}

fn compare(op: ComparisonOperator, value: f64, criterion: f64) -> bool {
    match op {
        ComparisonOperator::GreaterThan => value > criterion,
        ComparisonOperator::LessThan => value < criterion,
        ComparisonOperator::GreaterThanOrEqual => value >= criterion,
        ComparisonOperator::LessThanOrEqual => value <= criterion,
        ComparisonOperator::Equal => value == criterion,
    }
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    Point::new(lat1, lon1).distance_km(lat2, lon2)
}

/// A point distances are measured from, with the cosine of its latitude computed once.
#[derive(Debug, Clone, Copy)]
struct Point {
    latitude: f64,
    longitude: f64,
    cos_latitude: f64,
}

impl Point {
    fn new(latitude: f64, longitude: f64) -> Self {
        Self {
            latitude,
            longitude,
            cos_latitude: latitude.to_radians().cos(),
        }
    }

    /// Great-circle distance in kilometres to another point (haversine).
    #[inline]
    fn distance_km(&self, lat: f64, lon: f64) -> f64 {
        let dp = (lat - self.latitude).to_radians();
        let dl = (lon - self.longitude).to_radians();
        let h = (dp / 2.0).sin().powi(2)
            + self.cos_latitude * lat.to_radians().cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }
}

#[cfg(test)]
mod tests;
