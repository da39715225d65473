//! str0m clients that behave as the web client's pages do when the room under them fails:
//! each joins through the control plane (`POST /api/…/join` with its sign-in cookie), opens
//! the room's events socket, then publishes (WHIP) or watches (WHEP) as that participant; when
//! the events socket closes (the SFU pod died, the relay left), it asks the control plane
//! again, with a short back-off, and carries on where the new answer says. Nothing is told
//! to them from outside: they notice and re-join by themselves.
//!
//! Each client keeps a [`Log`] of what a person would notice, for the disruption tests: when
//! the room was lost, when they were back in, and (watchers) when video from every person
//! expected on camera was flowing again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sfu_node::client::{ClientPeer, ClientRole, EventSocket, Watcher, host_of};
use str0m::Event;
use str0m::media::Mid;

use crate::stack::ControlPlane;

/// The back-off between two join attempts (the page's first steps are of the same size).
const RETRY: Duration = Duration::from_millis(250);
/// Frames from one slot before it counts as "video is flowing" from that person.
const FLOWING: u32 = 5;
/// How long a join may wait for the room's welcome.
const WELCOME_WITHIN: Duration = Duration::from_secs(5);
/// Pauses between two video frames shorter than this are not kept in the [`Log`]: at 30
/// frames a second from each person on camera, frames are closer than this.
const GAP: Duration = Duration::from_millis(30);

/// The control plane's join answer: where to watch, where to publish, and the token.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The pod to watch from (`http://HOST:PORT`: a relay, or the origin).
    pub sfu: String,
    /// The origin pod (`http://HOST:PORT`), where people publish.
    pub origin: String,
    pub room: String,
    pub token: String,
    /// Where a page watches through the control plane's signalling proxy (`/sfu/origin` or
    /// `/sfu/<relay>`, on the control plane's own address).
    pub proxied: Option<String>,
}

impl Joined {
    fn from(body: &Value) -> Option<Joined> {
        let sfu = body["sfu"].as_str()?.to_string();
        Some(Joined {
            origin: body["origin"].as_str().unwrap_or(&sfu).to_string(),
            sfu,
            room: body["room"].as_str()?.to_string(),
            token: body["token"].as_str()?.to_string(),
            proxied: body["signalling"]["sfu"].as_str().map(str::to_string),
        })
    }
}

/// `POST join_path` as `cookie`: the answer, or the refusal as `"STATUS code"`.
pub async fn join(api: &ControlPlane, cookie: &str, join_path: &str) -> Result<Joined, String> {
    match api.post(cookie, join_path, serde_json::json!({})).await {
        Ok((200, body)) => {
            Joined::from(&body).ok_or_else(|| format!("200 without a join answer: {body}"))
        }
        Ok((status, body)) => Err(format!(
            "{status} {}",
            body["error"].as_str().unwrap_or("?")
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// What one client lived through.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// When each stay in the room began (the events socket welcomed it) and which pod it
    /// was on.
    pub stays: Vec<(Instant, String)>,
    /// When the room was lost (the events socket closed without the client leaving).
    pub lost: Vec<Instant>,
    /// Watchers: when video from every expected person was flowing, once per stay.
    pub all_video: Vec<Instant>,
    /// Watchers: when the last video frame arrived.
    pub last_video: Option<Instant>,
    /// Watchers: every pause between two video frames of at least [`GAP`], over all stays:
    /// when it ended and how long it was.
    pub video_gaps: Vec<(Instant, Duration)>,
    /// Page-style watchers: when a dropped events socket was resumed as the same participant,
    /// media untouched (not a new stay).
    pub resumed: Vec<Instant>,
    /// Publishers: video frames sent over all stays.
    pub frames_sent: u64,
    /// Failed join attempts, in words.
    pub failures: Vec<String>,
}

impl Log {
    /// The longest time between `from` and `to` in which this watcher received no video
    /// frame (pauses shorter than 30 ms are not counted).
    pub fn longest_video_gap(&self, from: Instant, to: Instant) -> Duration {
        let Some(last) = self.last_video else {
            return to.saturating_duration_since(from);
        };
        let mut longest = Duration::ZERO;
        for &(end, gap) in &self.video_gaps {
            let (start, end) = ((end - gap).max(from), end.min(to));
            longest = longest.max(end.saturating_duration_since(start));
        }
        longest.max(to.saturating_duration_since(last.max(from)))
    }
}

/// A client's [`Log`], shared with the task running it.
pub type SharedLog = Arc<Mutex<Log>>;

fn record(log: &SharedLog, f: impl FnOnce(&mut Log)) {
    f(&mut log.lock().expect("a client task panicked"));
}

/// Opens the events socket at `base` and waits for the welcome: the participant id.
async fn welcome(base: &str, joined: &Joined) -> Result<(EventSocket, u64), String> {
    let host = host_of(base).map_err(|e| e.to_string())?;
    let url = format!(
        "ws://{host}/rooms/{}/events?token={}",
        joined.room, joined.token
    );
    let (events, first) = welcome_at(&url).await?;
    Ok((events, first["you"].as_u64().unwrap_or(0)))
}

/// Someone on camera until `end`: joins through the control plane at `join_path`, publishes
/// non-simulcast video and audio to the origin as the participant of its events socket, and
/// re-joins and publishes again whenever that socket closes.
pub async fn on_camera(
    api: ControlPlane,
    cookie: String,
    join_path: String,
    end: Instant,
    log: SharedLog,
) {
    while Instant::now() < end {
        let attempt = async {
            let joined = join(&api, &cookie, &join_path).await?;
            let (events, you) = welcome(&joined.origin, &joined).await?;
            let addr = host_of(&joined.origin)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("{}: {e}", joined.origin))?;
            let path = format!(
                "/rooms/{}/whip?participant={you}&source=camera",
                joined.room
            );
            let (peer, _) = ClientPeer::connect(
                addr,
                &path,
                &joined.token,
                ClientRole::Publish { simulcast: false },
            )
            .await
            .map_err(|e| format!("WHIP at {}: {e}", joined.origin))?;
            Ok::<_, String>((joined, events, peer))
        };
        let (joined, mut events, mut peer) = match attempt.await {
            Ok(ok) => ok,
            Err(why) => {
                record(&log, |l| l.failures.push(why));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        record(&log, |l| l.stays.push((Instant::now(), joined.origin)));
        let closed = async { while events.next_event().await.is_some() {} };
        tokio::select! {
            sent = peer.publish_until(end, false) => {
                record(&log, |l| l.frames_sent += sent.unwrap_or(0));
                // The peer ended by itself before `end`: the room is gone; join again.
                if Instant::now() < end {
                    record(&log, |l| l.lost.push(Instant::now()));
                }
            }
            () = closed => record(&log, |l| l.lost.push(Instant::now())),
        }
    }
}

/// Someone watching until `end`: joins through the control plane at `join_path`, watches
/// `slots` slots from where the answer says, and re-joins whenever the events socket closes.
/// Each stay logs when video from `expect` people (distinct slots) is flowing.
pub async fn watching(
    api: ControlPlane,
    cookie: String,
    join_path: String,
    expect: usize,
    end: Instant,
    log: SharedLog,
) {
    let slots = expect.max(1) + 1;
    while Instant::now() < end {
        let joined = match join(&api, &cookie, &join_path).await {
            Ok(joined) => joined,
            Err(why) => {
                record(&log, |l| l.failures.push(why));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let watcher = match Watcher::join(&joined.sfu, &joined.room, &joined.token, slots).await {
            Ok(w) => w,
            Err(e) => {
                record(&log, |l| l.failures.push(format!("{}: {e}", joined.sfu)));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        record(&log, |l| l.stays.push((Instant::now(), joined.sfu.clone())));
        let Watcher {
            mut events,
            mut peer,
            ..
        } = watcher;
        let mut stay = Stay::new(expect);
        stay.watch(&mut peer, &mut events, end, &log).await;
        if Instant::now() < end {
            record(&log, |l| l.lost.push(Instant::now()));
        }
    }
}

/// Someone watching as the web client's page does, through the control plane's signalling
/// proxy: the events socket and WHEP go to the control plane at `api`, media straight to the
/// SFU. When the events socket closes, it joins through the control plane again and first
/// asks to resume its participant (`participant` and `instance` from the welcome) on the
/// same media connection; only if that is refused (a new run of the room) does it start over.
pub async fn page_watching(
    api: ControlPlane,
    cookie: String,
    join_path: String,
    expect: usize,
    end: Instant,
    log: SharedLog,
) {
    let slots = expect.max(1) + 1;
    let cp = host_of(&api.base).unwrap_or_default().to_string();
    let events_url = |joined: &Joined, proxied: &str| {
        format!(
            "ws://{cp}{proxied}/rooms/{}/events?token={}",
            joined.room, joined.token
        )
    };
    while Instant::now() < end {
        let attempt = async {
            let joined = join(&api, &cookie, &join_path).await?;
            let proxied = joined
                .proxied
                .clone()
                .ok_or_else(|| "no signalling path in the join answer".to_string())?;
            let (events, welcome) = welcome_at(&events_url(&joined, &proxied)).await?;
            let you = welcome["you"].as_u64().unwrap_or(0);
            let addr = cp.parse().map_err(|e| format!("{cp}: {e}"))?;
            let path = format!("{proxied}/rooms/{}/whep?participant={you}", joined.room);
            let (peer, _) =
                ClientPeer::connect(addr, &path, &joined.token, ClientRole::View { slots })
                    .await
                    .map_err(|e| format!("WHEP through {cp}{proxied}: {e}"))?;
            Ok::<_, String>((joined, proxied, events, welcome, peer))
        };
        let (first, proxied, mut events, welcome, mut peer) = match attempt.await {
            Ok(ok) => ok,
            Err(why) => {
                record(&log, |l| l.failures.push(why));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        record(&log, |l| l.stays.push((Instant::now(), proxied.clone())));
        let resume = format!(
            "&participant={}&instance={}",
            welcome["you"], welcome["instance"]
        );
        let mut stay = Stay::new(expect);
        loop {
            stay.watch(&mut peer, &mut events, end, &log).await;
            if Instant::now() >= end || !peer.rtc.is_alive() {
                break;
            }
            // The events socket closed under a live media connection: resume, retrying while
            // the control plane is away.
            let resuming = async {
                loop {
                    if Instant::now() >= end {
                        return None;
                    }
                    // As the page: a new join answer (the control plane is back and this
                    // person still signed in), then the events socket with the page's own
                    // token, whose person the participant is.
                    let again = async {
                        join(&api, &cookie, &join_path).await?;
                        welcome_at(&format!("{}{resume}", events_url(&first, &proxied))).await
                    };
                    // A request to a control plane that is away may hang: never past `end`.
                    let left = end.saturating_duration_since(Instant::now());
                    let again = async {
                        tokio::time::timeout(left, again)
                            .await
                            .unwrap_or_else(|_| Err("no answer before the end".to_string()))
                    };
                    match again.await {
                        Ok((socket, w)) if w["you"] == welcome["you"] => return Some(socket),
                        Ok((_, w)) => {
                            record(&log, |l| {
                                l.failures.push(format!("resumed as another: {w}"))
                            });
                            return None;
                        }
                        Err(why) if why.contains("not_resumable") => {
                            record(&log, |l| l.failures.push(why));
                            return None;
                        }
                        Err(why) => {
                            record(&log, |l| l.failures.push(why));
                            tokio::time::sleep(RETRY).await;
                        }
                    }
                }
            };
            // The media connection plays on while the events socket comes back.
            let resumed = stay.meanwhile(&mut peer, end, &log, resuming).await;
            match resumed {
                Some(socket) => {
                    events = socket;
                    record(&log, |l| l.resumed.push(Instant::now()));
                }
                None => break,
            }
        }
        if Instant::now() < end {
            record(&log, |l| l.lost.push(Instant::now()));
        }
    }
}

/// Opens an events socket at `url` and waits for the welcome.
async fn welcome_at(url: &str) -> Result<(EventSocket, Value), String> {
    let mut events = EventSocket::connect_url(url)
        .await
        .map_err(|e| format!("events socket at {url}: {e}"))?;
    let first = tokio::time::timeout(WELCOME_WITHIN, async {
        loop {
            match events.next_event().await {
                Some(v) if v["type"] == "welcome" => return Ok(v),
                Some(v) if v["type"] == "refused" => return Err(format!("refused: {v}")),
                Some(_) => {}
                None => return Err("events socket closed before the welcome".to_string()),
            }
        }
    })
    .await
    .map_err(|_| format!("no welcome from {url} in {WELCOME_WITHIN:?}"))??;
    Ok((events, first))
}

/// One stay of a watcher on one media connection: frames per slot, and whether video from
/// everyone expected was reported flowing.
struct Stay {
    expect: usize,
    frames: BTreeMap<Mid, u32>,
    reported: bool,
}

impl Stay {
    fn new(expect: usize) -> Self {
        Stay {
            expect,
            frames: BTreeMap::new(),
            reported: false,
        }
    }

    /// Receives media until `end`, the media connection dies or the events socket closes,
    /// logging every video frame.
    async fn watch(
        &mut self,
        peer: &mut ClientPeer,
        events: &mut EventSocket,
        end: Instant,
        log: &SharedLog,
    ) {
        while Instant::now() < end && peer.rtc.is_alive() {
            tokio::select! {
                alive = self.step(peer, end, log) => if !alive { return },
                event = events.next_event() => {
                    if event.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Receives media until `work` is done (a page's media connection goes on playing while
    /// it re-connects its events socket); `work`'s result.
    async fn meanwhile<T>(
        &mut self,
        peer: &mut ClientPeer,
        end: Instant,
        log: &SharedLog,
        work: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let mut alive = true;
        loop {
            // Past `end` a step returns at once: only the work is waited for then.
            let stepping = alive && peer.rtc.is_alive() && Instant::now() < end;
            tokio::select! {
                done = &mut work => return done,
                still = self.step(peer, end, log), if stepping => alive = still,
            }
        }
    }

    /// One step of the media connection, logging the video frames it brought; false when the
    /// connection failed.
    async fn step(&mut self, peer: &mut ClientPeer, end: Instant, log: &SharedLog) -> bool {
        let Ok(got) = peer.step(end).await else {
            return false;
        };
        for e in got {
            let Event::MediaData(m) = e else { continue };
            if !m.params.spec().codec.is_video() {
                continue;
            }
            *self.frames.entry(m.mid).or_default() += 1;
            let now = Instant::now();
            record(log, |l| {
                if let Some(gap) = l.last_video.map(|last| now - last)
                    && gap >= GAP
                {
                    l.video_gaps.push((now, gap));
                }
                l.last_video = Some(now);
            });
        }
        let flowing = self.frames.values().filter(|n| **n >= FLOWING).count();
        if !self.reported && flowing >= self.expect {
            self.reported = true;
            record(log, |l| l.all_video.push(Instant::now()));
        }
        true
    }
}
