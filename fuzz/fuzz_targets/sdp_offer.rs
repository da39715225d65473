//! A WHIP or WHEP body as the sfu-node's room takes it (`Room::publish` / `Room::view`, behind
//! `POST /rooms/{room}/whip|whep`): str0m's SDP parser, the offer/answer negotiation and the
//! room's placement of the new peer's tracks and slots. The first byte picks what is asked:
//! watch only, or publish a camera or a screen and then watch with the same offer.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sfu_node::media::{MediaConfig, Source};
use sfu_node::room::Room;
use sfu_node::rules::Identity;
use sfu_node::{RoomConfig, RoomKind};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    // The handlers take the body as a `String`: a body that is not UTF-8 never gets here.
    let Ok(offer) = std::str::from_utf8(body) else {
        return;
    };
    let mut room = Room::new(
        RoomConfig::new("room:default:fuzz", RoomKind::Room),
        MediaConfig::new("127.0.0.1:40000".parse().unwrap()),
    );
    let now = Instant::now();
    let presenter = Identity::watcher("presenter", "Presenter").with_grants(|g| {
        g.share = true;
        g.host = true;
    });
    let source = match mode % 3 {
        0 => None,
        1 => Some(Source::Camera),
        _ => Some(Source::Screen),
    };
    if let Some(source) = source {
        let published = room.publish(now, presenter, None, source, offer);
        if let Ok((_, _, answer)) = &published {
            assert!(answer.starts_with("v=0"), "an answer is SDP: {answer:?}");
        }
    }
    let viewed = room.view(now, Identity::watcher("viewer", "Viewer"), None, offer);
    if let Ok((_, _, answer)) = &viewed {
        assert!(answer.starts_with("v=0"), "an answer is SDP: {answer:?}");
    }
    // Let the new peers run a little: timeouts, the first datagrams out, the room's events.
    for step in 1..=3 {
        room.handle_timeout(now + Duration::from_millis(50 * step));
        while room.poll_transmit().is_some() {}
        while room.poll_output().is_some() {}
    }
    let _ = room.status();
});
