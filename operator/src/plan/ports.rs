//! Picking a UDP hostPort for a new SFU pod.
//!
//! As in Agones, each SFU pod gets a hostPort from a configured range, and the same port must
//! never be used twice on one node. The operator does not know the node before the scheduler
//! places the pod, so it picks the port used by the fewest existing SFU pods; the scheduler's
//! NodePorts filter then only places the pod on a node where that port is free. With a range
//! at least as large as the pods a node holds, a free node always exists while capacity does.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// The least used port of `range`, given the hostPorts of existing SFU pods (lowest on ties).
/// `None` if the range is empty.
pub fn pick_host_port(
    range: RangeInclusive<u16>,
    in_use: impl IntoIterator<Item = u16>,
) -> Option<u16> {
    let mut uses: BTreeMap<u16, usize> = BTreeMap::new();
    for port in in_use {
        if range.contains(&port) {
            *uses.entry(port).or_default() += 1;
        }
    }
    range.min_by_key(|port| (uses.get(port).copied().unwrap_or(0), *port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pod_gets_the_lowest_port() {
        assert_eq!(pick_host_port(31000..=31009, []), Some(31000));
    }

    #[test]
    fn ports_in_use_are_skipped() {
        assert_eq!(pick_host_port(31000..=31009, [31000, 31001]), Some(31002));
    }

    #[test]
    fn when_every_port_is_used_the_least_used_is_shared_across_nodes() {
        let used = [31000, 31001, 31002, 31000, 31002];
        assert_eq!(pick_host_port(31000..=31002, used), Some(31001));
    }

    #[test]
    fn ports_outside_the_range_do_not_count() {
        assert_eq!(pick_host_port(31000..=31001, [30000, 31000]), Some(31001));
    }

    #[test]
    fn an_empty_range_has_no_port() {
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 31001..=31000;
        assert_eq!(pick_host_port(empty, []), None);
    }
}
