//! The `sfu-node` binary as a process of its own, for the tests that need the real thing (its
//! flags, its one JSON line of addresses, its CPU): started with the given arguments, killed
//! when dropped. Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use sfu_node::auth::{Claims, mint};

/// A running `sfu-node` and the addresses it printed.
pub struct Sfu {
    pub child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub udp: SocketAddr,
    /// Where ICE-TCP listens, if it does.
    pub tcp: Option<SocketAddr>,
}

impl Drop for Sfu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sfu-node` with `args` (logging warnings only) and reads its address line.
pub fn start(args: &[&str]) -> Sfu {
    start_command(Command::new(env!("CARGO_BIN_EXE_sfu-node")), args)
}

/// [`start`] by `command` (`sfu-node`, or a program that runs it, e.g. in a network namespace);
/// its log filter is `SFU_LOG`, or warnings only.
pub fn start_command(mut command: Command, args: &[&str]) -> Sfu {
    let log = std::env::var("SFU_LOG").unwrap_or_else(|_| "warn".into());
    let mut child = command
        .args(args)
        .env("RUST_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting sfu-node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("sfu-node's address line");
    let addr = |k: &str| v[k].as_str().map(|a| a.parse().unwrap());
    Sfu {
        http: addr("http").unwrap(),
        admin: addr("admin").unwrap(),
        udp: addr("udp").unwrap(),
        tcp: addr("tcp"),
        child,
    }
}

/// A join token for `room` signed with `key`, valid an hour: `sub` watches, and goes on camera
/// without asking when `share`.
pub fn token(key: &str, room: &str, sub: &str, share: bool) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut claims = Claims::new(sub, sub, room, exp);
    claims.grants.share = share;
    mint(key.as_bytes(), &claims)
}
