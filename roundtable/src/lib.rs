//! The `roundtable` command ties the crates together: `roundtable operator` runs the
//! controllers of `roundtable-operator`, `roundtable api` the control plane of
//! `roundtable-control-plane`, and `roundtable up` ([`local`]) both sides in one process with
//! embedded SFUs and no cluster.

#![forbid(unsafe_code)]

pub mod local;
