//! Pure planning: what should exist for a room, given its spec, what was observed and `now`.
//!
//! Nothing here talks to Kubernetes or reads the clock; the controllers observe, call these
//! functions and apply the result. Unit tests pin the clock.

pub mod autoscale;
pub mod backoff;
pub mod conditions;
pub mod decide;
pub mod moving;
pub mod pod;
pub mod ports;
pub mod recording;
pub mod references;
pub mod relay;
pub mod rollup;
pub mod schedule;
pub mod service;
pub mod sizing;

#[cfg(test)]
mod moving_tests;
#[cfg(test)]
mod tests;
