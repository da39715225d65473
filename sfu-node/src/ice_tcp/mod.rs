//! ICE over TCP on the media port (RFC 6544, passive side): for attendees whose networks drop
//! UDP and who have no TURN server. The room offers a `tcptype passive` host candidate at its
//! advertised address besides the UDP one (str0m ranks it below UDP, so a browser with working
//! UDP never picks it); a browser connects to that port and speaks RFC 4571-framed packets.
//!
//! - [`framing`] — **pure**: the byte stream cut into packets, and what counts as garbage;
//! - [`conns`] — **pure**: which connections may open, which have timed out, when a slow
//!   reader's packets are dropped, and the counters;
//! - [`io`] — the listener and the per-connection tasks that apply those decisions;
//! - [`shared`] — one TCP port for signalling and ICE-TCP, told apart by the first byte (the
//!   operator's pods have one TCP hostPort for both).
//!
//! Incoming packets reach the room as `Receive { proto: Tcp, source: the connection's remote
//! address }`; the room's `Transmit`s with `proto: Tcp` go to the connection of their
//! destination.

pub mod conns;
pub mod framing;
pub mod io;
pub mod shared;

pub use conns::{Closed, Connections, TcpLimits, TcpStats};
pub use io::{TcpEvent, TcpIn, TcpSide};
pub use shared::{HttpListener, MediaTcp, share};
