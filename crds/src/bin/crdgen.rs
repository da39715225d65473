//! Writes the CRD YAML of every kind under `crds/yaml/` and into the Helm chart's
//! `charts/roundtable/crds/` (the same bytes: Helm installs CRDs from there).
//!
//! Run from anywhere in the repository: `cargo run -p roundtable-crds --bin crdgen`.
//! A test fails when the committed files differ from what this writes.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        ("crds/yaml", crate_dir.join("yaml")),
        (
            "charts/roundtable/crds",
            crate_dir.join("../charts/roundtable/crds"),
        ),
    ];
    for (shown, dir) in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, yaml) in roundtable_crds::generate::files() {
            std::fs::write(dir.join(&file), yaml)?;
            println!("wrote {shown}/{file}");
        }
    }
    Ok(())
}
