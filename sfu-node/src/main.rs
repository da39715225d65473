//! `sfu-node`: serve one live room. Every flag has an environment variable the operator sets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sfu_node::ice_tcp::{HttpListener, MediaTcp, share};
use sfu_node::media::Bwe;
use sfu_node::relay::{Origin, serve_relay};
use sfu_node::server::{Listeners, ServerConfig, bind_media, serve};
use sfu_node::{Limits, RoomConfig, RoomKind, SharePolicy, Theme};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Debug, Parser)]
#[command(
    name = "sfu-node",
    about = "Roundtable media server: one room per process"
)]
struct Args {
    /// The room's identity; join tokens must carry it in their `room` claim.
    #[arg(long, env = "SFU_ROOM")]
    room: String,
    /// session, stage or room.
    #[arg(long, env = "SFU_KIND", default_value = "session")]
    kind: RoomKind,
    /// Who may go on camera: open, moderated or invite-only.
    #[arg(long, env = "SFU_SHARE_POLICY", default_value = "open")]
    share_policy: SharePolicy,
    /// meeting or webinar (attendees do not publish).
    #[arg(long, env = "SFU_THEME", default_value = "meeting")]
    theme: Theme,
    /// Joiners wait until a host admits them.
    #[arg(long, env = "SFU_LOCKED", default_value_t = false)]
    locked: bool,
    /// People on camera, 1 to 20 (a stage's backstage is always 5).
    #[arg(long, env = "SFU_MAX_ON_CAMERA", default_value_t = 10)]
    max_on_camera: u32,
    /// Lower the watcher cap (500 up to 10 on camera, 150 above). On a relay: the watchers
    /// this relay serves.
    #[arg(long, env = "SFU_MAX_WATCHERS")]
    max_watchers: Option<u32>,
    /// Relay pods serve this room's watchers beyond one pod's cap: `--max-watchers` is then
    /// the whole room's and may exceed the cap; this pod itself still serves at most the cap.
    #[arg(long, env = "SFU_RELAYED_WATCHERS", default_value_t = false)]
    relayed_watchers: bool,
    /// Chat messages kept for late joiners.
    #[arg(long, env = "SFU_CHAT_HISTORY", default_value_t = 100)]
    chat_history: usize,
    /// Public signalling (WHIP/WHEP, events WebSocket).
    #[arg(long, env = "SFU_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Admin port: /metrics, /healthz, /readyz, /stats.
    #[arg(long, env = "SFU_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Offer ICE over TCP at the media port's number, for attendees whose networks drop UDP.
    /// When signalling has that TCP port (`--http-addr` on the media port, as in the operator's
    /// pods), both share it: the first byte of a connection tells HTTP from ICE-TCP.
    #[arg(long, env = "SFU_ICE_TCP", default_value_t = true, action = clap::ArgAction::Set)]
    ice_tcp: bool,
    /// Address the media port binds (UDP, and TCP for ICE-TCP).
    #[arg(long, env = "SFU_UDP_BIND", default_value = "0.0.0.0")]
    udp_bind: IpAddr,
    /// The one media port for all peers, UDP and the same number on TCP for attendees
    /// without UDP (0 picks one free on both).
    #[arg(long, env = "SFU_UDP_PORT", default_value_t = 40000)]
    udp_port: u16,
    /// Address put in ICE candidates: the node IP of a hostPort, or a load balancer.
    /// `IP` or `IP:PORT`; the port defaults to the bound UDP port.
    #[arg(long, env = "SFU_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// HS256 key that verifies join tokens.
    #[arg(long, env = "SFU_TOKEN_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// File holding the token key (a mounted Secret), instead of SFU_TOKEN_KEY.
    #[arg(long, env = "SFU_TOKEN_KEY_FILE")]
    token_key_file: Option<std::path::PathBuf>,
    /// On SIGTERM, how long existing peers may stay.
    #[arg(long, env = "SFU_DRAIN_GRACE_SECONDS", default_value_t = 300)]
    drain_grace_seconds: u64,
    /// Starting bandwidth estimate towards each viewer.
    #[arg(long, env = "SFU_INITIAL_ESTIMATE_KBPS", default_value_t = 1500)]
    initial_estimate_kbps: u64,
    /// How each viewer's bandwidth (which its video layers follow) is estimated: from its
    /// TWCC feedback, by str0m's GCC with its pacer, or not at all.
    #[arg(long, env = "SFU_BWE", value_enum, default_value_t = Bwe::Feedback)]
    bwe: Bwe,
    /// Threads that drive the room's peers (encrypt and send media to each, fire their
    /// timers); the room's decisions stay on one. Default: the CPUs this process may use
    /// (its cgroup's CPU limit, e.g. a pod's, and its CPU affinity).
    #[arg(long, env = "SFU_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Relay mode: serve this room's watchers from its origin sfu-node, `http://HOST:PORT`.
    #[arg(long, env = "ROUNDTABLE_ORIGIN")]
    origin: Option<String>,
}

fn advertise(arg: Option<&str>, udp: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    let Some(a) = arg else {
        return Ok(None);
    };
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    let ip: IpAddr = a
        .parse()
        .with_context(|| format!("SFU_ADVERTISE_ADDR {a:?} is neither IP nor IP:PORT"))?;
    Ok(Some(SocketAddr::new(ip, udp.port())))
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .init();
    let args = Args::parse();
    let key = sfu_node::auth::key_from(args.token_key.as_deref(), args.token_key_file.as_deref())
        .context("reading the token key file")?
        .context("set SFU_TOKEN_KEY or SFU_TOKEN_KEY_FILE")?;
    let mut room = RoomConfig::new(&args.room, args.kind);
    room.share_policy = args.share_policy;
    room.theme = args.theme;
    room.locked = args.locked;
    room.chat_history = args.chat_history;
    room.limits = match (args.relayed_watchers, args.max_watchers) {
        (true, Some(room_watchers)) => {
            Limits::relayed(args.kind, args.max_on_camera, room_watchers)?
        }
        _ => Limits::new(args.kind, args.max_on_camera, args.max_watchers)?,
    };

    // ICE-TCP is offered at the media port's number. Where signalling has that TCP port (the
    // operator's pods serve both on one hostPort) the two share its listener, which works only
    // where peers reach the port under its own number (a NodePort maps it to another).
    let shares_port = args.http_addr.port() == args.udp_port && args.udp_port != 0;
    let (udp, own_tcp) = if shares_port || !args.ice_tcp {
        let udp = UdpSocket::bind((args.udp_bind, args.udp_port))
            .await
            .with_context(|| format!("binding UDP {}:{}", args.udp_bind, args.udp_port))?;
        (udp, None)
    } else {
        let (udp, tcp) = bind_media(args.udp_bind, args.udp_port)
            .await
            .with_context(|| {
                format!(
                    "binding UDP and TCP {}:{} (media and ICE-TCP)",
                    args.udp_bind, args.udp_port
                )
            })?;
        (udp, Some(tcp))
    };
    let http = TcpListener::bind(args.http_addr).await?;
    let admin = TcpListener::bind(args.admin_addr).await?;
    let udp_addr = udp.local_addr()?;
    let advertise = advertise(args.advertise_addr.as_deref(), udp_addr)?;
    let advertised_port = advertise.unwrap_or(udp_addr).port();
    let (http, tcp): (HttpListener, Option<MediaTcp>) = match own_tcp {
        Some(tcp) => (http.into(), Some(tcp.into())),
        None if shares_port && args.ice_tcp && advertised_port == udp_addr.port() => {
            let (http, tcp) = share(http)?;
            (http, Some(tcp))
        }
        None => {
            if args.ice_tcp {
                tracing::warn!(
                    advertised_port,
                    "no ICE-TCP: peers reach the media port under another number than signalling's"
                );
            }
            (http.into(), None)
        }
    };
    // One line for whoever started us (tests, the local mode) to find the ports.
    println!(
        "{}",
        serde_json::json!({
            "room": args.room,
            "http": http.local_addr()?.to_string(),
            "admin": admin.local_addr()?.to_string(),
            "udp": udp_addr.to_string(),
            "tcp": tcp.as_ref().map(|t| t.local_addr().map(|a| a.to_string())).transpose()?,
            "advertise": advertise.unwrap_or(udp_addr).to_string(),
            "origin": args.origin,
        })
    );
    tracing::info!(room = %args.room, kind = ?args.kind, origin = ?args.origin, "serving");
    let config = ServerConfig {
        room,
        advertise,
        token_key: key,
        drain_grace: Duration::from_secs(args.drain_grace_seconds),
        initial_estimate_bps: args.initial_estimate_kbps * 1000,
        bwe: args.bwe,
        threads: args
            .threads
            .map(usize::from)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1),
    };
    let listeners = Listeners {
        udp,
        tcp,
        http,
        admin,
    };
    match &args.origin {
        Some(origin) => {
            let origin = Origin::parse(origin)?;
            serve_relay(config, origin, listeners, terminated()).await?
        }
        None => serve(config, listeners, terminated()).await?,
    }
    tracing::info!("drained; bye");
    Ok(())
}
