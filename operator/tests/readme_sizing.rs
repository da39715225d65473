//! The README's sizing table is what the operator computes.

use roundtable_operator::config::OperatorConfig;
use roundtable_operator::plan::sizing::pod_size;

#[test]
fn readme_sizing_table_matches_the_formula() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("<!-- sizing-table -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /sizing-table -->").next())
        .expect("README has the sizing table between its markers");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 5, "the table has rows");
    // The operator's defaults (`--sfu-max-cores`).
    let max_cores = OperatorConfig::default().sfu_max_cores;
    for row in rows {
        let on_camera: u64 = row[0].parse().unwrap();
        let watching: u64 = row[1].parse().unwrap();
        let size = pod_size(on_camera, watching, max_cores);
        let computed = [
            size.forwarded_streams.to_string(),
            size.cpu_quantity(),
            size.memory_quantity(),
            size.egress_mbps.to_string(),
            format!("{}m", size.needed_millicores),
            size.threads.to_string(),
        ];
        assert_eq!(
            &row[2..8],
            &computed.each_ref().map(String::as_str)[..],
            "row {on_camera} on camera, {watching} watching"
        );
    }
}
