//! The manifest's shape for other tools: its JSON Schema for editors, and manifests
//! rendered back to YAML (for `import`).

use super::{DefinitionManifest, DomainManifest, Manifest};

/// The JSON Schema of a manifest document, for editors: a Pinpoint manifest (`Segment`,
/// `ImportedSegment`, `Application`), or a Customer Profiles `SegmentDefinition` or `Domain`.
pub fn json_schema() -> serde_json::Value {
    let mut g = schemars::SchemaGenerator::default();
    let pinpoint = g.subschema_for::<Manifest>();
    let definition = g.subschema_for::<DefinitionManifest>();
    let domain = g.subschema_for::<DomainManifest>();
    let mut defs = g.take_definitions(true);
    // In a manifest, a source may also name another manifest of the folder.
    if let Some(source) = defs.get_mut("SourceSegment") {
        if let Some(props) = source
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            props.insert(
                "Ref".into(),
                serde_json::json!({
                    "description": "The metadata.name of a SegmentDefinition manifest of the folder (instead of SegmentDefinitionName).",
                    "type": "string"
                }),
            );
        }
    }
    serde_json::json!({
        "$schema": schemars::generate::SchemaSettings::default().meta_schema,
        "title": "segmentctl manifest",
        "oneOf": [pinpoint, definition, domain],
        "$defs": defs,
    })
}

/// Renders manifests as one YAML stream (used by `import`).
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (i, m) in manifests.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(m)?);
    }
    Ok(out)
}
