//! Pod addresses of one node: `127.0.<node>.<n>` for `n` in 2..=254 (`.1` is the node's).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

const FIRST: u8 = 2;
const LAST: u8 = 254;

#[derive(Debug)]
pub(crate) struct Ips {
    node: u8,
    used: BTreeSet<u8>,
    /// Where the next search starts, so a freed address is reused as late as possible.
    next: u8,
}

impl Ips {
    pub(crate) fn new(node: u8) -> Self {
        Self {
            node,
            used: BTreeSet::new(),
            next: FIRST,
        }
    }

    /// The node's own address (its `InternalIP`), which pods on the host's network share.
    pub(crate) fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.node, 1)
    }

    pub(crate) fn allocate(&mut self) -> Option<Ipv4Addr> {
        let span = LAST - FIRST + 1;
        let n = (0..span)
            .map(|i| FIRST + (self.next - FIRST + i) % span)
            .find(|n| !self.used.contains(n))?;
        self.used.insert(n);
        self.next = if n == LAST { FIRST } else { n + 1 };
        Some(Ipv4Addr::new(127, 0, self.node, n))
    }

    pub(crate) fn release(&mut self, ip: Ipv4Addr) {
        let [_, _, node, n] = ip.octets();
        if node == self.node {
            self.used.remove(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_and_reused_last() {
        let mut ips = Ips::new(3);
        let a = ips.allocate().unwrap();
        let b = ips.allocate().unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 0, 3, 2));
        assert_eq!(b, Ipv4Addr::new(127, 0, 3, 3));
        ips.release(a);
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(127, 0, 3, 4)));
        let rest: Vec<_> = std::iter::from_fn(|| ips.allocate()).collect();
        assert_eq!(rest.len(), 253 - 2, "253 addresses in all, two in use");
        assert!(
            rest.contains(&a),
            "a freed address comes back once the others are taken"
        );
        assert_eq!(ips.allocate(), None);
    }
}
