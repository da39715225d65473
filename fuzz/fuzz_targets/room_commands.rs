//! What arrives on an sfu-node's room-events WebSocket: each line is one text frame, parsed
//! as the socket parses it (`ClientCommand` JSON) and, when it parses, handed to the room as
//! the socket hands it (`Room::command`), from a host, a moderator or a watcher in turn.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sfu_node::media::MediaConfig;
use sfu_node::room::Room;
use sfu_node::rules::{ClientCommand, Identity};
use sfu_node::{RoomConfig, RoomKind};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = match mode % 3 {
        0 => RoomKind::Session,
        1 => RoomKind::Stage,
        _ => RoomKind::Room,
    };
    let mut config = RoomConfig::new(format!("{kind:?}:default:fuzz"), kind);
    config.locked = mode & 0x10 != 0;
    let mut room = Room::new(config, MediaConfig::new("127.0.0.1:40000".parse().unwrap()));
    let now = Instant::now();
    let host = Identity::watcher("host", "Host").with_grants(|g| g.host = true);
    let moderator = Identity::watcher("mod", "Mod").with_grants(|g| g.moderate = true);
    let mut watcher = Identity::watcher("guest", "Guest");
    if kind == RoomKind::Stage && mode & 0x20 != 0 {
        watcher = watcher.in_backstage();
    }
    let people: Vec<_> = [host, moderator, watcher]
        .into_iter()
        .filter_map(|identity| room.connect(identity).ok())
        .collect();
    if people.is_empty() {
        return;
    }
    for (i, line) in text.lines().take(64).enumerate() {
        // The socket answers a frame that does not parse with a `bad_command` refusal.
        let Ok(command) = serde_json::from_str::<ClientCommand>(line) else {
            continue;
        };
        let at = Duration::from_millis(300 * i as u64);
        room.command(
            now + at,
            at.as_millis() as u64,
            people[i % people.len()],
            command,
        );
        while room.poll_output().is_some() {}
    }
    let _ = room.status();
});
