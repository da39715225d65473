//! The committed CRD YAML must be what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crd_yaml_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    let mut stale = Vec::new();
    for (file, expected) in roundtable_crds::generate::files() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        if committed != expected {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "crds/yaml is stale ({}); run `cargo run -p roundtable-crds --bin crdgen` and commit the result",
        stale.join(", ")
    );
}

#[test]
fn every_kind_is_in_the_roundtable_category_with_a_short_name() {
    for crd in roundtable_crds::generate::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["roundtable".to_string()][..])
        );
        assert_eq!(
            names.short_names.as_ref().map(Vec::len),
            Some(1),
            "{}",
            names.kind
        );
        let version = &crd.spec.versions[0];
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(
            subresources.status.is_some(),
            "{} has a status subresource",
            names.kind
        );
    }
}
