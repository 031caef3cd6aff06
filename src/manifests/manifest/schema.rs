//! The manifest's shape for other tools: its JSON Schema for editors, and manifests
//! rendered back to YAML (for `import`).

use super::Manifest;

/// The JSON Schema of a manifest document, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or_default()
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
