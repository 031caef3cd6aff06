//! Properties of the pure pipeline over generated segments and manifests.

use std::collections::BTreeMap;

use proptest::prelude::*;
use segmentctl::manifests::manifest::{self, Kind, Manifest, Metadata, Source};
use segmentctl::model::*;
use segmentctl::plan::diff;
use segmentctl::plan::{self, Action, Settings};
use segmentctl::targets::pinpoint::MemoryPinpoint;

const APP: &str = "0123456789abcdef0123456789abcdef";

fn set_dim() -> impl Strategy<Value = SetDimension> {
    (
        prop::option::of(prop_oneof![
            Just(DimensionType::Inclusive),
            Just(DimensionType::Exclusive)
        ]),
        prop::collection::vec("[A-Z]{2}", 1..4),
    )
        .prop_map(|(dimension_type, values)| SetDimension {
            dimension_type,
            values,
        })
}

fn instant() -> impl Strategy<Value = String> {
    (2020u32..2030, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}T00:00:00Z"))
}

fn attr_dim() -> impl Strategy<Value = AttributeDimension> {
    prop_oneof![
        (
            prop::option::of(prop_oneof![
                Just(AttributeType::Inclusive),
                Just(AttributeType::Exclusive),
                Just(AttributeType::Contains)
            ]),
            prop::collection::vec("[a-z]{1,6}", 1..4)
        )
            .prop_map(|(attribute_type, values)| AttributeDimension {
                attribute_type,
                values
            }),
        (
            prop_oneof![
                Just(AttributeType::Between),
                Just(AttributeType::NotBetween)
            ],
            instant(),
            instant()
        )
            .prop_map(|(t, a, b)| AttributeDimension {
                attribute_type: Some(t),
                values: vec![a, b]
            }),
        (
            prop_oneof![
                Just(AttributeType::Before),
                Just(AttributeType::After),
                Just(AttributeType::On)
            ],
            instant()
        )
            .prop_map(|(t, a)| AttributeDimension {
                attribute_type: Some(t),
                values: vec![a]
            }),
    ]
}

fn dims() -> impl Strategy<Value = SegmentDimensions> {
    (
        prop::option::of(prop::collection::btree_map("[a-z]{1,5}", attr_dim(), 0..3)),
        prop::option::of(set_dim()),
        prop::option::of(set_dim()),
        prop::option::of(prop::collection::btree_map(
            "[a-z]{1,5}",
            (0.0f64..1000.0).prop_map(|v| (v * 10.0).round() / 10.0),
            0..2,
        )),
        prop::option::of(prop_oneof![Just(Duration::Day7), Just(Duration::Day30)]),
    )
        .prop_map(
            |(attributes, platform, country, metrics, recency)| SegmentDimensions {
                attributes,
                demographic: platform.map(|p| SegmentDemographics {
                    platform: Some(p),
                    ..Default::default()
                }),
                location: country.map(|c| SegmentLocation {
                    country: Some(c),
                    gps_point: None,
                }),
                metrics: metrics.map(|m| {
                    m.into_iter()
                        .map(|(k, value)| {
                            (
                                k,
                                MetricDimension {
                                    comparison_operator: ComparisonOperator::GreaterThan,
                                    value,
                                },
                            )
                        })
                        .collect()
                }),
                behavior: recency.map(|duration| SegmentBehaviors {
                    recency: Some(RecencyDimension {
                        duration,
                        recency_type: RecencyType::Active,
                    }),
                }),
                user_attributes: None,
            },
        )
}

fn request() -> impl Strategy<Value = WriteSegmentRequest> {
    (
        prop::option::of("[A-Za-z][A-Za-z ]{0,11}"),
        prop::option::of(dims()),
        prop::option::of(prop::collection::btree_map(
            "[a-z]{1,5}",
            "[a-z0-9]{0,5}",
            0..3,
        )),
    )
        .prop_map(|(name, dimensions, tags)| WriteSegmentRequest {
            name,
            dimensions,
            segment_groups: None,
            tags,
        })
}

/// A desired state of up to 6 segments, named s0…s5; some build on a lower-numbered one by
/// `Ref`, their criteria inside the group.
fn state() -> impl Strategy<Value = BTreeMap<String, WriteSegmentRequest>> {
    prop::collection::btree_map("s[0-5]", request(), 0..6).prop_flat_map(|segs| {
        let n = segs.len();
        (
            Just(segs),
            prop::collection::vec(any::<prop::sample::Index>(), n),
            prop::collection::vec(any::<bool>(), n),
        )
            .prop_map(|(segs, picks, on)| {
                let names: Vec<String> = segs.keys().cloned().collect();
                let mut out = BTreeMap::new();
                for (i, (name, mut spec)) in segs.into_iter().enumerate() {
                    if i > 0 && on[i] {
                        let base = names[picks[i].index(i)].clone();
                        spec.segment_groups = Some(SegmentGroupList {
                            groups: Some(vec![SegmentGroup {
                                dimensions: spec.dimensions.take().map(|d| vec![d]),
                                source_segments: Some(vec![SegmentReference {
                                    id: None,
                                    reference: Some(base),
                                    version: None,
                                }]),
                                source_type: None,
                                group_type: None,
                            }]),
                            include: None,
                        });
                    }
                    out.insert(name, spec);
                }
                out
            })
    })
}

fn manifests(segs: &BTreeMap<String, WriteSegmentRequest>) -> String {
    let docs: Vec<Manifest> = segs
        .iter()
        .map(|(name, spec)| Manifest {
            api_version: manifest::API_VERSION.into(),
            kind: Kind::Segment,
            metadata: Metadata {
                name: name.clone(),
                application: Some(APP.into()),
                ..Default::default()
            },
            spec: spec.clone(),
            source: None,
        })
        .collect();
    manifest::to_yaml(&docs).unwrap()
}

fn desired(text: &str) -> segmentctl::manifests::desired::DesiredState {
    let l = manifest::load_sources(&[Source {
        name: "m.yaml".into(),
        bytes: text.as_bytes().to_vec().into(),
    }]);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    segmentctl::manifests::desired::build(&l.documents).unwrap()
}

/// The target in memory, holding the application the manifests name.
fn target() -> MemoryPinpoint {
    let p = MemoryPinpoint::new();
    p.insert_app(APP, "app", Tags::new());
    p
}

/// Plans `segs` against `p` (the pipeline's observe and plan).
fn plan_on(p: &MemoryPinpoint, segs: &BTreeMap<String, WriteSegmentRequest>) -> plan::Plan {
    let d = desired(&manifests(segs));
    let everything = |_: &str| true;
    let scope = segmentctl::reconcile::observe::Scope {
        owner: "segmentctl",
        owns: &everything,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let observed = rt
        .block_on(segmentctl::reconcile::observe::observe(p, &d, &scope))
        .unwrap();
    plan::plan(&d, &observed, &settings())
}

/// Applies a plan with the real executor.
fn apply_on(p: &MemoryPinpoint, plan: &plan::Plan) -> segmentctl::reconcile::outcome::Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(segmentctl::reconcile::apply::apply(
        p,
        plan,
        &Default::default(),
    ))
}

fn blocked_names(plan: &plan::Plan) -> Vec<String> {
    plan.steps()
        .filter(|(_, s)| s.is_blocked())
        .map(|(_, s)| s.name.clone())
        .collect()
}

fn settings() -> Settings {
    Settings {
        owner: "segmentctl".into(),
        prune: true,
        max_delete_percent: 100.0,
    }
}

/// Byte edits: (where, byte, 0 replace / 1 remove / 2 insert).
type Edits = Vec<(prop::sample::Index, u8, u8)>;

fn mutate(mut bytes: Vec<u8>, edits: Edits) -> Vec<u8> {
    for (at, byte, op) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match op {
            0 => bytes[i] = byte,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, byte),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent(r in request()) {
        let none = |_: &str| None;
        let once = diff::canonical(&r, &none);
        prop_assert_eq!(diff::canonical(&once, &none), once.clone());
        prop_assert_eq!(diff::normalize(&once, &none), diff::normalize(&r, &none));
    }

    #[test]
    fn a_definition_does_not_differ_from_itself(r in request()) {
        let none = |_: &str| None;
        let n = diff::normalize(&r, &none);
        prop_assert!(diff::diff(&n, &n).is_empty());
    }

    #[test]
    fn applying_the_plan_from_a_to_b_then_planning_again_is_empty(a in state(), b in state()) {
        // Live state: `a`, applied from empty by the real executor.
        let p = target();
        let r = apply_on(&p, &plan_on(&p, &a));
        prop_assert_eq!(r.failed(), 0, "{}", r.details(true));
        let again = plan_on(&p, &a);
        prop_assert!(again.is_empty(), "{}", segmentctl::report::text(&again, false));
        // Then the manifests become `b`.
        let to_b = plan_on(&p, &b);
        let blocked = blocked_names(&to_b);
        let r = apply_on(&p, &to_b);
        prop_assert_eq!(r.failed(), 0, "{}", r.details(true));
        prop_assert_eq!(r.blocked(), blocked.len());
        if blocked.is_empty() {
            let again = plan_on(&p, &b);
            prop_assert!(again.is_empty(), "{}", segmentctl::report::text(&again, false));
        } else {
            // A blocked delete may be freed by the steps that ran (a dependent updated off
            // it): a second round applies it. After that only blocked deletes are left, each
            // blocked in the first plan, and their segments still live.
            let r = apply_on(&p, &plan_on(&p, &b));
            prop_assert_eq!(r.failed(), 0, "{}", r.details(true));
            let rest = plan_on(&p, &b);
            for (_, s) in rest.steps() {
                prop_assert!(s.action == Action::Delete && s.is_blocked(), "{}", segmentctl::report::text(&rest, false));
                prop_assert!(blocked.contains(&s.name), "{} was not blocked before", s.name);
                let id = s.segment_id.clone().unwrap();
                prop_assert!(p.segments(APP).iter().any(|l| l.id == id), "a blocked segment was deleted");
            }
            let live_before = p.segments(APP).len();
            apply_on(&p, &rest);
            prop_assert_eq!(p.segments(APP).len(), live_before, "blocked deletes change nothing");
        }
        // Every Ref became the id of the segment the plan kept under that name.
        for s in p.segments(APP) {
            for r in s.segment_groups.iter().flat_map(|g| g.groups.iter().flatten()).flat_map(|g| g.source_segments.iter().flatten()) {
                let id = r.id.as_deref().unwrap();
                prop_assert!(p.segments(APP).iter().any(|l| l.id == id), "a base segment does not exist");
            }
        }
    }

    #[test]
    fn manifests_round_trip_through_the_desired_state(a in state()) {
        let d = desired(&manifests(&a));
        let back: BTreeMap<String, WriteSegmentRequest> = d.apps.iter().flat_map(|x| x.segments.iter().map(|s| (s.name.clone(), s.spec.clone()))).collect();
        let none = |_: &str| None;
        prop_assert_eq!(back.len(), a.len());
        for (name, spec) in &a {
            prop_assert_eq!(diff::canonical(&back[name], &none), diff::canonical(spec, &none));
            prop_assert_eq!(&back[name].tags, &spec.tags);
        }
    }

    #[test]
    fn mutated_manifests_never_panic_and_always_validate_or_say_where(
        a in state(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let bytes = mutate(manifests(&a).into_bytes(), edits);
        let l = manifest::load_sources(&[Source { name: "m.yaml".into(), bytes: bytes.into() }]);
        let errors = match segmentctl::manifests::desired::build(&l.documents) {
            Ok(_) => l.errors,
            Err(mut e) => { e.extend(l.errors); e }
        };
        for e in &errors {
            prop_assert!(e.line >= 1 && e.column >= 1, "an error without a location: {}", e);
            prop_assert!(e.to_string().starts_with("m.yaml:"));
        }
    }

    #[test]
    fn mutated_endpoint_records_never_panic_and_every_line_is_read_or_rejected(
        a in state(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..12),
    ) {
        use segmentctl::audience::evaluate::{Catalog, Program};
        let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
        let catalog = Catalog::of(&a);
        let nodes: Vec<_> = a.keys().map(|name| program.add(0, &catalog, name)).collect();
        let line = r#"{"ChannelType":"SMS","Demographic":{"Platform":"iOS","AppVersion":"1.0"},"Location":{"Country":"US","Latitude":47.6,"Longitude":-122.3},"Attributes":{"plan":["gold","x\u00e9"],"signup":["2026-05-01T00:00:00Z"]},"Metrics":{"m":3.5},"User":{"UserAttributes":{"tier":["a"]}},"EffectiveDate":"2026-11-20T00:00:00Z"}"#;
        let bytes = mutate([line, line, line].join("\n").into_bytes(), edits);
        let t = segmentctl::audience::records::tally(&bytes[..], &program, &nodes).unwrap();
        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count() as u64;
        prop_assert_eq!(t.read + t.rejected, lines);
        prop_assert!(t.counts.iter().all(|c| *c <= t.read));
    }
}
