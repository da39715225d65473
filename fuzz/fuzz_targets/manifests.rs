//! A manifest file as local mode reads it (`manifests::parse_into`), then what local mode does
//! with what it read: the catalog the pages show (`LocalCatalog`), each live room's schedule
//! and the sfu-node settings it would be started with (`runner::room_config`). A cluster's
//! API server validates these objects against the CRD schema first; local mode does not.
#![no_main]

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use roundtable::local::runner::room_config;
use roundtable_control_plane::Catalog;
use roundtable_control_plane::manifest_catalog::LocalCatalog;
use roundtable_control_plane::manifests::{Manifests, parse_into};
use roundtable_crds::live_room::LiveRoom;
use roundtable_fuzz::NOW;
use roundtable_operator::plan::decide::room_desired;
use roundtable_operator::plan::schedule::desired;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut manifests = Manifests::default();
    if parse_into(&mut manifests, Path::new("fuzz.yaml"), text).is_err() {
        return;
    }
    let now = Timestamp::from_second(NOW as i64).unwrap();
    let catalog = LocalCatalog::new(manifests, now);
    let events = catalog.events();
    let event_of = |room: &LiveRoom| {
        let name = room.event.as_deref()?;
        events
            .iter()
            .find(|e| {
                e.metadata.namespace.as_deref() == Some(room.namespace.as_str())
                    && e.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    };
    let scheduled = catalog
        .sessions()
        .iter()
        .map(|s| LiveRoom::from(&**s))
        .chain(catalog.stages().iter().map(|s| LiveRoom::from(&**s)))
        .collect::<Vec<_>>();
    for room in &scheduled {
        let event = event_of(room);
        let _ = desired(room.window(event.as_deref()), now, SignedDuration::ZERO);
        let _ = room.settings(event.as_deref());
        let _ = room_config(room);
    }
    for r in catalog.rooms() {
        let room = LiveRoom::from(&*r);
        let idle = r
            .spec
            .idle_timeout_seconds
            .map_or(SignedDuration::from_secs(300), |s| {
                SignedDuration::from_secs(s.into())
            });
        let _ = room_desired(Some(now), None, idle, now);
        let _ = room_config(&room);
    }
});
