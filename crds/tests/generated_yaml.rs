//! The committed CRD YAML must be what the Rust types generate.

use std::path::Path;

/// The CRD files a directory should hold: exactly what the types generate, nothing else.
fn stale_files(dir: &Path) -> Vec<String> {
    let expected = roundtable_crds::generate::files();
    let mut stale: Vec<String> = expected
        .iter()
        .filter(|(file, yaml)| std::fs::read_to_string(dir.join(file)).ok().as_ref() != Some(yaml))
        .map(|(file, _)| file.clone())
        .collect();
    let extra = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| !expected.iter().any(|(file, _)| file == name))
                .map(|name| format!("{name} (not generated)"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    stale.extend(extra);
    stale
}

#[test]
fn committed_crd_yaml_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    let stale = stale_files(&dir);
    assert!(
        stale.is_empty(),
        "crds/yaml is stale ({}); run `cargo run -p roundtable-crds --bin crdgen` and commit the result",
        stale.join(", ")
    );
}

#[test]
fn the_helm_charts_crds_are_the_generated_yaml() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/roundtable/crds");
    let stale = stale_files(&dir);
    assert!(
        stale.is_empty(),
        "charts/roundtable/crds differs from the generated CRDs ({}); run `cargo run -p roundtable-crds --bin crdgen` and commit the result",
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
