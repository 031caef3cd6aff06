//! The second front end: Customer Profiles segment definitions compiled into the same
//! nodes and criteria as Pinpoint segments, run over profiles by the same evaluator.
//!
//! Where the model and the documentation are silent, the rules chosen here (pinned by
//! tests) are:
//! - comparisons of values are exact (case-sensitive); an absent field, a null or an empty
//!   string is missing;
//! - a missing value never satisfies INCLUSIVE, CONTAINS, BEGINS_WITH, ENDS_WITH, a date
//!   criterion, a comparison or a list criterion, and always satisfies EXCLUSIVE and
//!   NOT_BETWEEN;
//! - the criteria of one ProfileAttributes (or one Attributes or CalculatedAttributes map)
//!   must all hold;
//! - `Include`, a group's `Type` and its `SourceType` default to ALL, as the model's
//!   defaults (the SDKs fill them in);
//! - dates are ISO 8601 instants or calendar dates `YYYY-MM-DD` (their midnight UTC);
//!   BEFORE and AFTER are strict, BETWEEN includes both bounds, ON compares UTC days;
//! - GREATER_THAN … EQUAL read the attribute as a number written `-?DIGITS[.DIGITS]` (any
//!   other value never satisfies them) and hold when it compares true with one of the
//!   criterion's values;
//! - LIST_CONTAINS and LIST_CONTAINS_ALL read the attribute as a list (a JSON array of
//!   strings, or one value): some, or every one, of the criterion's values is in it;
//! - `Gender` and `PartyType` (deprecated enums) are not read by `GenderString` and
//!   `PartyTypeString`;
//! - calculated attributes are not computed by this server: they are missing on every
//!   profile;
//! - a source definition that cannot be found matches no profile.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{Criterion, Group, Node, NodeId, Program, Source, Temporal, MAX_DEPTH};
use crate::model::profiles::{
    parse_date_or_instant, AttributeDimensionType, DateDimensionType, Dimension, ProfileDimension,
    ProfileTypeDimensionType, SegmentGroups, StringDimensionType,
};
use crate::model::{ComparisonOperator, Include};

/// The definitions of one domain, by name: where sources are found.
#[derive(Debug, Clone, Default)]
pub struct DefinitionCatalog<'d> {
    pub definitions: BTreeMap<String, &'d SegmentGroups>,
}

impl Program {
    /// An empty program over Customer Profiles profiles.
    pub fn for_profiles(as_of: OffsetDateTime) -> Self {
        let mut p = Self::new(as_of);
        p.schema.profiles = true;
        p
    }

    /// Compiles the definition `name` of `catalog` (with its sources) and returns its node.
    /// An unknown name gives a node that matches nothing (listed by [`Program::unknown`]).
    pub fn add_definition(
        &mut self,
        scope: usize,
        catalog: &DefinitionCatalog<'_>,
        name: &str,
    ) -> NodeId {
        debug_assert!(self.schema.profiles, "a profile program");
        self.definition(scope, catalog, name, 0)
    }

    /// Compiles criteria that are no stored definition (an estimate's `SegmentQuery`),
    /// their sources found in `catalog`.
    pub fn add_query(
        &mut self,
        scope: usize,
        catalog: &DefinitionCatalog<'_>,
        query: &SegmentGroups,
    ) -> NodeId {
        debug_assert!(self.schema.profiles, "a profile program");
        let node = self.definition_node(scope, catalog, query, 0);
        self.push(node)
    }

    fn definition(
        &mut self,
        scope: usize,
        catalog: &DefinitionCatalog<'_>,
        name: &str,
        depth: usize,
    ) -> NodeId {
        if let Some(id) = self.compiled.get(&(scope, name.to_string())) {
            return *id;
        }
        let Some(groups) = catalog.definitions.get(name) else {
            self.unknown.push((scope, name.to_string()));
            return self.push(Node::Never);
        };
        if depth > MAX_DEPTH {
            self.too_deep.push((scope, name.to_string()));
            return self.push(Node::Never);
        }
        let node = self.definition_node(scope, catalog, groups, depth);
        let id = self.push(node);
        self.compiled.insert((scope, name.to_string()), id);
        id
    }

    fn definition_node(
        &mut self,
        scope: usize,
        catalog: &DefinitionCatalog<'_>,
        query: &SegmentGroups,
        depth: usize,
    ) -> Node {
        let Some(groups) = &query.groups else {
            return Node::All(Vec::new()); // no criteria: every profile
        };
        let groups = groups
            .iter()
            .map(|g| Group {
                source_type: g.source_type.unwrap_or(Include::All),
                sources: g
                    .source_segments
                    .iter()
                    .flatten()
                    .map(|s| match &s.segment_definition_name {
                        Some(n) => self.definition(scope, catalog, n, depth + 1),
                        None => self.push(Node::Never),
                    })
                    .collect(),
                group_type: g.group_type.unwrap_or(Include::All),
                dimensions: g
                    .dimensions
                    .iter()
                    .flatten()
                    .map(|d| self.profile_dimension(d))
                    .collect(),
            })
            .collect();
        Node::Groups {
            include: query.include.unwrap_or(Include::All),
            groups,
        }
    }

    /// One dimension: its criteria, all of which must hold.
    fn profile_dimension(&mut self, d: &Dimension) -> Vec<Criterion> {
        let mut out = Vec::new();
        if let Some(p) = &d.profile_attributes {
            for (field, dim) in p.strings() {
                if let Some(dim) = dim {
                    let slot = self.schema.list_of(Source::ProfileField, field);
                    out.push(self.string(slot, dim));
                }
            }
            if let Some(b) = &p.birth_date {
                let slot = self.schema.list_of(Source::ProfileField, "BirthDate");
                let kind = match b.dimension_type {
                    DateDimensionType::Before => Temporal::Before,
                    DateDimensionType::After => Temporal::After,
                    DateDimensionType::On => Temporal::On,
                    DateDimensionType::Between => Temporal::Between,
                    DateDimensionType::NotBetween => Temporal::NotBetween,
                };
                out.push(self.dated(slot, kind, date_bounds(&b.values)));
            }
            for (address, a) in p.addresses() {
                for (part, dim) in a.iter().flat_map(|a| a.parts()) {
                    if let Some(dim) = dim {
                        let path = format!("{address}.{part}");
                        let slot = self.schema.list_of(Source::ProfileField, &path);
                        out.push(self.string(slot, dim));
                    }
                }
            }
            for (key, a) in p.attributes.iter().flatten() {
                out.push(self.custom(key, a.dimension_type, &a.values));
            }
            if let Some(t) = &p.profile_type {
                let slot = self.schema.list_of(Source::ProfileField, "ProfileType");
                let values: Vec<String> = t.values.iter().map(|v| v.as_str().into()).collect();
                out.push(self.listed(
                    slot,
                    &values,
                    t.dimension_type == ProfileTypeDimensionType::Exclusive,
                ));
            }
        }
        for a in d.calculated_attributes.iter().flat_map(|c| c.values()) {
            // Not computed here: missing on every profile.
            out.push(Criterion::Constant(matches!(
                a.dimension_type,
                AttributeDimensionType::Exclusive | AttributeDimensionType::NotBetween
            )));
        }
        out
    }

    /// A criterion on a string field.
    fn string(&mut self, slot: usize, d: &ProfileDimension) -> Criterion {
        match d.dimension_type {
            StringDimensionType::Inclusive => self.listed(slot, &d.values, false),
            StringDimensionType::Exclusive => self.listed(slot, &d.values, true),
            StringDimensionType::Contains => self.contains(slot, &d.values),
            StringDimensionType::BeginsWith => self.affix(slot, &d.values, false),
            StringDimensionType::EndsWith => self.affix(slot, &d.values, true),
        }
    }

    /// A criterion on a custom attribute.
    fn custom(&mut self, key: &str, kind: AttributeDimensionType, values: &[String]) -> Criterion {
        use AttributeDimensionType as T;
        let list = matches!(kind, T::ListContains | T::ListContainsAll);
        let source = if list {
            Source::ProfileAttributeList
        } else {
            Source::ProfileAttribute
        };
        let slot = self.schema.list_of(source, key);
        let compared = |op: ComparisonOperator, this: &mut Self| {
            this.schema.kept[slot] = true;
            Criterion::Compared {
                slot,
                op,
                values: values.iter().filter_map(|v| v.parse().ok()).collect(),
            }
        };
        match kind {
            T::Inclusive | T::ListContains => self.listed(slot, values, false),
            T::Exclusive => self.listed(slot, values, true),
            T::Contains => self.contains(slot, values),
            T::BeginsWith => self.affix(slot, values, false),
            T::EndsWith => self.affix(slot, values, true),
            T::Before => self.dated(slot, Temporal::Before, date_bounds(values)),
            T::After => self.dated(slot, Temporal::After, date_bounds(values)),
            T::On => self.dated(slot, Temporal::On, date_bounds(values)),
            T::Between => self.dated(slot, Temporal::Between, date_bounds(values)),
            T::NotBetween => self.dated(slot, Temporal::NotBetween, date_bounds(values)),
            T::GreaterThan => compared(ComparisonOperator::GreaterThan, self),
            T::LessThan => compared(ComparisonOperator::LessThan, self),
            T::GreaterThanOrEqual => compared(ComparisonOperator::GreaterThanOrEqual, self),
            T::LessThanOrEqual => compared(ComparisonOperator::LessThanOrEqual, self),
            T::Equal => compared(ComparisonOperator::Equal, self),
            T::ListContainsAll => {
                self.schema.kept[slot] = true;
                Criterion::ListedAll {
                    slot,
                    values: values.iter().map(|v| v.as_str().into()).collect(),
                }
            }
        }
    }

    fn contains(&mut self, slot: usize, values: &[String]) -> Criterion {
        self.schema.kept[slot] = true;
        Criterion::Contains {
            slot,
            values: values.iter().map(|v| v.as_str().into()).collect(),
            finders: values
                .iter()
                .map(|v| memchr::memmem::Finder::new(v.as_bytes()).into_owned())
                .collect(),
        }
    }

    fn affix(&mut self, slot: usize, values: &[String], end: bool) -> Criterion {
        self.schema.kept[slot] = true;
        Criterion::Affix {
            slot,
            values: values.iter().map(|v| v.as_str().into()).collect(),
            end,
        }
    }
}

/// The `i`th value as an instant (a date is its midnight UTC).
fn date_bounds(values: &[String]) -> impl Fn(usize) -> Option<i128> + '_ {
    move |i| {
        values
            .get(i)
            .and_then(|v| parse_date_or_instant(v))
            .map(OffsetDateTime::unix_timestamp_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `profiles` the definition `target` holds, among `definitions` (name and
    /// SegmentGroups JSON).
    fn holds(definitions: &[(&str, &str)], target: &str, profiles: &[&str]) -> Vec<bool> {
        let parsed: Vec<(String, SegmentGroups)> = definitions
            .iter()
            .map(|(n, j)| (n.to_string(), serde_json::from_str(j).expect(j)))
            .collect();
        let catalog = DefinitionCatalog {
            definitions: parsed.iter().map(|(n, g)| (n.clone(), g)).collect(),
        };
        let as_of = time::macros::datetime!(2026-12-06 00:00 UTC);
        let mut program = Program::for_profiles(as_of);
        let node = program.add_definition(0, &catalog, target);
        let mut record = program.record();
        let mut out = Vec::new();
        profiles
            .iter()
            .map(|p| {
                program.read(p, &mut record).expect(p);
                program.run(&record, &mut out);
                out[node]
            })
            .collect()
    }

    fn one(dimension: &str) -> String {
        format!(r#"{{"Groups":[{{"Dimensions":[{dimension}]}}]}}"#)
    }

    const ADA: &str = r#"{"ProfileId":"a","FirstName":"Ada","LastName":"Lovelace","BirthDate":"1815-12-10","Address":{"City":"London"},"Attributes":{"tier":"[\"gold\",\"vip\"]","spend":"120.50","seen":"2026-11-30T10:00:00Z","plan":"pro"},"ProfileType":"PROFILE"}"#;
    const GRACE: &str = r#"{"ProfileId":"g","FirstName":"Grace","LastName":"Hopper","BirthDate":"1906-12-09","Attributes":{"tier":"gold","spend":"abc","plan":""}}"#;
    const NOBODY: &str = r#"{"ProfileId":"n"}"#;

    fn check(dimension: &str, expected: [bool; 3]) {
        let def = one(dimension);
        assert_eq!(
            holds(&[("d", &def)], "d", &[ADA, GRACE, NOBODY]),
            expected,
            "{dimension}"
        );
    }

    #[test]
    fn string_criteria_are_exact_and_a_missing_value_satisfies_only_exclusive() {
        let pa = |f: &str, t: &str, v: &str| {
            format!(r#"{{"ProfileAttributes":{{"{f}":{{"DimensionType":"{t}","Values":[{v}]}}}}}}"#)
        };
        check(
            &pa("FirstName", "INCLUSIVE", r#""Ada","Bob""#),
            [true, false, false],
        );
        check(
            &pa("FirstName", "INCLUSIVE", r#""ada""#),
            [false, false, false],
        );
        check(
            &pa("FirstName", "EXCLUSIVE", r#""Ada""#),
            [false, true, true],
        );
        check(
            &pa("LastName", "CONTAINS", r#""opp""#),
            [false, true, false],
        );
        check(
            &pa("LastName", "BEGINS_WITH", r#""Love""#),
            [true, false, false],
        );
        check(
            &pa("LastName", "ENDS_WITH", r#""per""#),
            [false, true, false],
        );
        check(
            r#"{"ProfileAttributes":{"Address":{"City":{"DimensionType":"INCLUSIVE","Values":["London"]}}}}"#,
            [true, false, false],
        );
        check(
            r#"{"ProfileAttributes":{"ProfileType":{"DimensionType":"INCLUSIVE","Values":["PROFILE"]}}}"#,
            [true, false, false],
        );
        // An empty string is missing: EXCLUSIVE holds, INCLUSIVE of "" cannot.
        check(
            r#"{"ProfileAttributes":{"Attributes":{"plan":{"DimensionType":"EXCLUSIVE","Values":["pro"]}}}}"#,
            [false, true, true],
        );
    }

    #[test]
    fn dates_read_calendar_days_and_instants() {
        let birth = |t: &str, v: &str| {
            format!(
                r#"{{"ProfileAttributes":{{"BirthDate":{{"DimensionType":"{t}","Values":[{v}]}}}}}}"#
            )
        };
        check(&birth("ON", r#""1815-12-10""#), [true, false, false]);
        // ON compares the UTC day: 23:00 at -02:00 is the next day.
        check(
            &birth("ON", r#""1815-12-09T23:00:00-02:00""#),
            [true, false, false],
        );
        check(&birth("BEFORE", r#""1900-01-01""#), [true, false, false]);
        check(&birth("BEFORE", r#""1815-12-10""#), [false, false, false]);
        check(&birth("AFTER", r#""1815-12-10""#), [false, true, false]);
        check(
            &birth("BETWEEN", r#""1815-12-10","1906-12-09""#),
            [true, true, false],
        );
        check(
            &birth("NOT_BETWEEN", r#""1800-01-01","1900-01-01""#),
            [false, true, true],
        );
        check(
            r#"{"ProfileAttributes":{"Attributes":{"seen":{"DimensionType":"AFTER","Values":["2026-11-30"]}}}}"#,
            [true, false, false],
        );
    }

    #[test]
    fn numbers_and_lists() {
        let attr = |t: &str, v: &str| {
            format!(
                r#"{{"ProfileAttributes":{{"Attributes":{{"{}":{{"DimensionType":"{t}","Values":[{v}]}}}}}}}}"#,
                if t.starts_with("LIST") {
                    "tier"
                } else {
                    "spend"
                }
            )
        };
        check(&attr("GREATER_THAN", r#""120""#), [true, false, false]);
        check(&attr("GREATER_THAN", r#""120.5""#), [false, false, false]);
        check(&attr("EQUAL", r#""120.5""#), [true, false, false]);
        check(
            &attr("LESS_THAN_OR_EQUAL", r#""1","200""#),
            [true, false, false],
        );
        check(&attr("LIST_CONTAINS", r#""vip""#), [true, false, false]);
        check(&attr("LIST_CONTAINS", r#""gold""#), [true, true, false]);
        check(
            &attr("LIST_CONTAINS_ALL", r#""gold","vip""#),
            [true, false, false],
        );
        check(&attr("LIST_CONTAINS_ALL", r#""gold""#), [true, true, false]);
        // INCLUSIVE compares the whole value, not its elements.
        check(
            r#"{"ProfileAttributes":{"Attributes":{"tier":{"DimensionType":"INCLUSIVE","Values":["gold"]}}}}"#,
            [false, true, false],
        );
    }

    #[test]
    fn calculated_attributes_are_missing_everywhere() {
        check(
            r#"{"CalculatedAttributes":{"_orders":{"DimensionType":"GREATER_THAN","Values":["1"]}}}"#,
            [false, false, false],
        );
        check(
            r#"{"CalculatedAttributes":{"_orders":{"DimensionType":"EXCLUSIVE","Values":["1"]}}}"#,
            [true, true, true],
        );
    }

    #[test]
    fn groups_sources_and_defaults() {
        let ada =
            r#"{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUSIVE","Values":["Ada"]}}}"#;
        let gold = r#"{"ProfileAttributes":{"Attributes":{"tier":{"DimensionType":"LIST_CONTAINS","Values":["gold"]}}}}"#;
        let base = one(gold);
        // Type defaults to ALL: both dimensions must hold.
        let both = format!(r#"{{"Groups":[{{"Dimensions":[{ada},{gold}]}}]}}"#);
        let either = format!(r#"{{"Groups":[{{"Type":"ANY","Dimensions":[{ada},{gold}]}}]}}"#);
        let neither = format!(r#"{{"Groups":[{{"Type":"NONE","Dimensions":[{ada},{gold}]}}]}}"#);
        // Sources: SourceType defaults to ALL, and a group is its sources and its dimensions.
        let on_base = format!(
            r#"{{"Groups":[{{"SourceSegments":[{{"SegmentDefinitionName":"base"}}],"Dimensions":[{ada}]}}]}}"#
        );
        let not_base = r#"{"Groups":[{"SourceSegments":[{"SegmentDefinitionName":"base"}],"SourceType":"NONE"}]}"#;
        let missing = r#"{"Groups":[{"SourceSegments":[{"SegmentDefinitionName":"gone"}]}]}"#;
        let groups = format!(
            r#"{{"Include":"ANY","Groups":[{{"Dimensions":[{ada}]}},{{"SourceSegments":[{{"SegmentDefinitionName":"base"}}]}}]}}"#
        );
        let defs = [
            ("base", base.as_str()),
            ("both", &both),
            ("either", &either),
            ("neither", &neither),
            ("on_base", &on_base),
            ("not_base", not_base),
            ("missing", missing),
            ("groups", &groups),
            ("everyone", "{}"),
        ];
        let run = |t: &str| holds(&defs, t, &[ADA, GRACE, NOBODY]);
        assert_eq!(run("both"), [true, false, false]);
        assert_eq!(run("either"), [true, true, false]);
        assert_eq!(run("neither"), [false, false, true]);
        assert_eq!(run("on_base"), [true, false, false]);
        assert_eq!(run("not_base"), [false, false, true]);
        assert_eq!(run("missing"), [false, false, false]);
        assert_eq!(run("groups"), [true, true, false]);
        assert_eq!(run("everyone"), [true, true, true]);
        assert_eq!(run("unknown"), [false, false, false]);
    }

    /// A chain of 32 sources is evaluated through; one source more and the program refuses
    /// (rather than answer that the top definition holds nobody).
    #[test]
    fn a_chain_of_sources_past_the_depth_is_refused_not_matched_as_nobody() {
        let leaf = one(
            r#"{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUSIVE","Values":["Ada"]}}}"#,
        );
        let on = |n: usize| {
            format!(r#"{{"Groups":[{{"SourceSegments":[{{"SegmentDefinitionName":"d{n}"}}]}}]}}"#)
        };
        let bodies: Vec<(String, String)> = std::iter::once(("d0".to_string(), leaf))
            .chain((1..=MAX_DEPTH + 1).map(|i| (format!("d{i}"), on(i - 1))))
            .collect();
        let parsed: Vec<(String, SegmentGroups)> = bodies
            .iter()
            .map(|(n, j)| (n.clone(), serde_json::from_str(j).expect(j)))
            .collect();
        let catalog = DefinitionCatalog {
            definitions: parsed.iter().map(|(n, g)| (n.clone(), g)).collect(),
        };
        let mut program = Program::for_profiles(OffsetDateTime::UNIX_EPOCH);
        let node = program.add_definition(0, &catalog, &format!("d{MAX_DEPTH}"));
        assert_eq!(program.refuse_too_deep(), Ok(()));
        let mut record = program.record();
        let mut out = Vec::new();
        program.read(ADA, &mut record).unwrap();
        program.run(&record, &mut out);
        assert!(out[node], "32 sources down, Ada is held");

        let mut program = Program::for_profiles(OffsetDateTime::UNIX_EPOCH);
        program.add_definition(0, &catalog, &format!("d{}", MAX_DEPTH + 1));
        assert_eq!(
            program.refuse_too_deep(),
            Err("d0 is reached through more than 32 levels of base segments or sources, more than are evaluated".to_string())
        );
    }

    #[test]
    fn a_line_that_is_no_profile_is_refused() {
        let catalog = DefinitionCatalog::default();
        let mut program = Program::for_profiles(OffsetDateTime::UNIX_EPOCH);
        program.add_definition(0, &catalog, "x");
        let mut record = program.record();
        for bad in ["[1]", "{", r#"{"ProfileId":7}"#, r#"{"Attributes":[]}"#] {
            assert!(program.read(bad, &mut record).is_err(), "{bad}");
        }
    }
}
