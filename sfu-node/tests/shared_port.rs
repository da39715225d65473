//! ICE-TCP on the port signalling has, as the operator's pods run sfu-node: `--http-addr` on the
//! media port's number, so one hostPort carries media (UDP) and signalling (TCP). A real
//! `sfu-node` process serves a room there; a publisher signals and sends over UDP, a watcher
//! that has no UDP at all signals over that same TCP port and gets its media over ICE-TCP on it,
//! and a client that speaks neither HTTP nor RFC 4571 is closed. With `--ice-tcp false` the
//! answers offer no TCP candidate.

use std::time::{Duration, Instant};

use sfu_node::client::{ClientPeer, ClientRole, Transport, Watcher, http_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::Sfu;

const KEY: &str = "shared-port-test-key";
const ROOM: &str = "shared";

/// sfu-node with signalling and media on one port number, as in a pod.
async fn start_sfu(ice_tcp: bool) -> Sfu {
    // A port free on UDP and TCP, given back for sfu-node to take.
    let port = {
        let (udp, tcp) = sfu_node::server::bind_media([127, 0, 0, 1].into(), 0)
            .await
            .unwrap();
        let port = udp.local_addr().unwrap().port();
        drop((udp, tcp));
        port
    }
    .to_string();
    let http = format!("127.0.0.1:{port}");
    let ice_tcp = ice_tcp.to_string();
    support::start(&[
        "--room",
        ROOM,
        "--token-key",
        KEY,
        "--kind",
        "session",
        "--http-addr",
        &http,
        "--admin-addr",
        "127.0.0.1:0",
        "--udp-bind",
        "127.0.0.1",
        "--udp-port",
        &port,
        "--ice-tcp",
        &ice_tcp,
        "--drain-grace-seconds",
        "1",
    ])
}

fn token(sub: &str, share: bool) -> String {
    support::token(KEY, ROOM, sub, share)
}

fn tcp_candidate(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find(|l| l.starts_with("a=candidate") && l.contains(" tcp "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_without_udp_gets_video_over_ice_tcp_on_the_signalling_port() {
    let sfu = start_sfu(true).await;
    assert_eq!(
        sfu.tcp,
        Some(sfu.http),
        "ICE-TCP listens where signalling does"
    );

    let (mut publisher, answer) = ClientPeer::connect(
        sfu.http,
        &format!("/rooms/{ROOM}/whip"),
        &token("pub", true),
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("a publisher signals on the shared port");
    let candidate = tcp_candidate(&answer.text()).map(str::to_owned);
    assert!(
        candidate.as_deref().is_some_and(
            |c| c.contains(&format!(" {} ", sfu.http.port())) && c.contains("tcptype passive")
        ),
        "a passive TCP candidate on the signalling port: {candidate:?}"
    );
    let end = Instant::now() + Duration::from_secs(8);
    let publishing = tokio::spawn(async move {
        let _ = publisher.publish_until(end, false).await;
    });

    let outcome = Watcher::join_over(
        &format!("http://{}", sfu.http),
        ROOM,
        &token("look", false),
        1,
        Transport::Tcp,
    )
    .await
    .expect("a watcher without UDP joins")
    .watch_until(end)
    .await;
    publishing.await.unwrap();
    eprintln!(
        "shared port: {} video frames over ICE-TCP, first after {:?}",
        outcome.video_frames, outcome.first_frame
    );
    assert!(
        outcome.video_frames > 60,
        "video over ICE-TCP on the signalling port: {} frames",
        outcome.video_frames
    );

    // HTTP still answers there (a refusal in JSON words, from the signalling router); a TLS
    // hello (neither HTTP nor RFC 4571) is closed at once.
    let refused = http_request(sfu.http, "POST", &format!("/rooms/{ROOM}/whep"), &[], b"")
        .await
        .unwrap();
    assert_eq!(
        refused.status,
        401,
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );
    let mut tls = tokio::net::TcpStream::connect(sfu.http).await.unwrap();
    tls.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a TLS hello is closed: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ice_tcp_off_answers_offer_no_tcp_candidate() {
    let sfu = start_sfu(false).await;
    assert_eq!(sfu.tcp, None);
    let (_peer, answer) = ClientPeer::connect(
        sfu.http,
        &format!("/rooms/{ROOM}/whep"),
        &token("look", false),
        ClientRole::View { slots: 1 },
    )
    .await
    .unwrap();
    assert_eq!(tcp_candidate(&answer.text()), None, "{}", answer.text());
}
