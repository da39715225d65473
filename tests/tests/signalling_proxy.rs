//! Signalling through the control plane, as a page served over https needs it: the join answer
//! names the control plane's own `/sfu/…` paths; the events WebSocket, WHIP and WHEP reach the
//! room's embedded sfu-node through the proxy; media still flows directly to the sfu-node over
//! UDP. A token for another room, or none, is refused by the proxy itself. Prints the added
//! latency of the proxy hop (median WHEP offer → answer, direct and proxied).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use roundtable_e2e::local::LocalStack;
use roundtable_e2e::wait_until;
use serde_json::Value;
use sfu_node::client::{ClientPeer, ClientRole, http_request};
use str0m::Event;

const REGISTRATION_KEY: &[u8] = b"proxy-registration-key";
const JOIN_KEY: &[u8] = b"proxy-join-key";

fn manifests() -> String {
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(1);
    let end = now + jiff::SignedDuration::from_hours(1);
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: LiveEvent\nmetadata: {{name: meetup}}\nspec:\n  title: Meetup\n  start: \"{start}\"\n  end: \"{end}\"\n  ticketTypes: [{{name: general}}]\n  organizers: [ada@example.com]\n---\napiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata: {{name: talk}}\nspec:\n  event: meetup\n  title: The talk\n  lifecycle: Started\n"
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_reaches_the_sfu_through_the_control_plane_and_media_goes_direct() {
    roundtable_e2e::init_test_logs();
    let dir = tempfile::tempdir().unwrap();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    std::fs::write(manifests_dir.join("meetup.yaml"), manifests()).unwrap();
    let stack = LocalStack::start(&manifests_dir, dir.path(), JOIN_KEY, REGISTRATION_KEY).await;
    let (cp, http, base) = (stack.addr, &stack.http, &stack.base);
    let cookie = stack.sign_in("ada@example.com", "Ada").await;
    let join = async || -> Value {
        wait_until(
            "the started session to take joins",
            Duration::from_secs(30),
            async || {
                let r = http
                    .post(format!("{base}/api/sessions/default/talk/join"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200).then_some(r.json::<Value>().await.ok()?)
            },
        )
        .await
    };
    let joined = join().await;
    assert_eq!(joined["signalling"]["sfu"], "/sfu/origin", "{joined}");
    assert_eq!(joined["signalling"]["origin"], "/sfu/origin", "{joined}");
    let room = joined["room"].as_str().unwrap().to_string();
    let token = joined["token"].as_str().unwrap().to_string();
    let direct: SocketAddr = joined["origin"]
        .as_str()
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let prefix = format!("/sfu/origin/rooms/{room}");

    // The events socket through the proxy: the room's welcome comes back.
    let (mut events, _) =
        tokio_tungstenite::connect_async(format!("ws://{cp}{prefix}/events?token={token}"))
            .await
            .expect("the events socket opens through the proxy");
    let welcome = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a first event")
        .unwrap()
        .unwrap();
    let welcome: Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let you = welcome["you"].as_u64().unwrap();

    // Without a token, or with a token of another room, the proxy refuses by itself.
    let other = sfu_node::auth::mint(
        JOIN_KEY,
        &sfu_node::auth::Claims::new("x", "X", "session:default:other", u64::MAX / 2),
    );
    for (auth, what) in [
        (None, "no token"),
        (Some(other.as_str()), "another room's token"),
    ] {
        let mut headers = vec![("content-type", "application/sdp")];
        let bearer = auth.map(|t| format!("Bearer {t}"));
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        let refused = http_request(cp, "POST", &format!("{prefix}/whep"), &headers, b"v=0\r\n")
            .await
            .unwrap();
        assert_eq!(refused.status, 401, "{what}: {}", refused.text());
        assert_eq!(refused.json()["error"], "join_token", "{what}");
    }
    let unknown = http_request(
        cp,
        "POST",
        &format!("/sfu/talk-relay-9/rooms/{room}/whep"),
        &[("authorization", &format!("Bearer {token}"))],
        b"v=0\r\n",
    )
    .await
    .unwrap();
    assert_eq!(unknown.status, 503, "a relay the room does not have");

    // On camera through the proxy; a second person watches through the proxy; media is direct.
    let (publisher, answer) = ClientPeer::connect(
        cp,
        &format!("{prefix}/whip?participant={you}&source=camera"),
        &token,
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("WHIP through the proxy");
    let location = answer.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{prefix}/peers/")),
        "Location points back at the proxy: {location}"
    );
    let publishing = tokio::spawn(async move {
        let mut p = publisher;
        let _ = p
            .publish_until(Instant::now() + Duration::from_secs(6), false)
            .await;
        p
    });
    let viewer_join = join().await;
    let viewer_token = viewer_join["token"].as_str().unwrap().to_string();
    let (mut viewer, _) = ClientPeer::connect(
        cp,
        &format!("{prefix}/whep"),
        &viewer_token,
        ClientRole::View { slots: 2 },
    )
    .await
    .expect("WHEP through the proxy");
    let end = Instant::now() + Duration::from_secs(5);
    let mut video = 0;
    while Instant::now() < end && video < 30 {
        let Ok(got) = viewer.step(end).await else {
            break;
        };
        video += got
            .iter()
            .filter(|e| matches!(e, Event::MediaData(m) if m.params.spec().codec.is_video()))
            .count();
    }
    assert!(video >= 30, "video reached the watcher: {video} frames");
    let publisher = publishing.await.unwrap();

    // The peer is ended through the Location the proxy gave.
    let ended = http_request(
        cp,
        "DELETE",
        &location,
        &[("authorization", &format!("Bearer {token}"))],
        b"",
    )
    .await
    .unwrap();
    assert!(
        ended.status == 204 || ended.status == 200,
        "DELETE {location}: {} {}",
        ended.status,
        ended.text()
    );
    drop(publisher);

    // The proxy hop's cost: WHEP offer → answer, direct and through the control plane.
    let mut direct_times = Vec::new();
    let mut proxied_times = Vec::new();
    for _ in 0..15 {
        for (addr, path, times) in [
            (direct, format!("/rooms/{room}/whep"), &mut direct_times),
            (cp, format!("{prefix}/whep"), &mut proxied_times),
        ] {
            let started = Instant::now();
            let (peer, _) =
                ClientPeer::connect(addr, &path, &viewer_token, ClientRole::View { slots: 2 })
                    .await
                    .unwrap();
            times.push(started.elapsed());
            let _ = http_request(
                addr,
                "DELETE",
                &peer.location,
                &[("authorization", &format!("Bearer {viewer_token}"))],
                b"",
            )
            .await;
        }
    }
    let (d, p) = (median(direct_times), median(proxied_times));
    eprintln!(
        "signalling proxy: WHEP offer→answer median {:.2?} direct, {:.2?} through the control plane (+{:.2?}), 15 each",
        d,
        p,
        p.saturating_sub(d)
    );
}
