//! Writes the CRD YAML of every kind under `crds/yaml/`.
//!
//! Run from anywhere in the repository: `cargo run -p roundtable-crds --bin crdgen`.
//! A test fails when the committed files differ from what this writes.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in roundtable_crds::generate::files() {
        std::fs::write(dir.join(&file), yaml)?;
        println!("wrote crds/yaml/{file}");
    }
    Ok(())
}
