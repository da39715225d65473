use std::time::{Duration, Instant};

use super::*;
use crate::config::{Limits, RoomConfig, RoomKind, SharePolicy, Theme};

fn room(kind: RoomKind) -> Rules {
    Rules::new(RoomConfig::new("r1", kind))
}

fn with(kind: RoomKind, f: impl FnOnce(&mut RoomConfig)) -> Rules {
    let mut c = RoomConfig::new("r1", kind);
    f(&mut c);
    Rules::new(c)
}

/// A session whose sharing moderators approve.
fn moderated() -> Rules {
    with(RoomKind::Session, |c| {
        c.share_policy = SharePolicy::Moderated
    })
}

fn drain(rules: &mut Rules) -> Vec<RulesOutput> {
    std::iter::from_fn(|| rules.poll_output()).collect()
}

fn events_for(out: &[RulesOutput], who: ParticipantId) -> Vec<ServerEvent> {
    out.iter()
        .filter_map(|o| match o {
            RulesOutput::Send(to, e) if *to == who => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn watcher(n: usize) -> Identity {
    Identity::watcher(&format!("u{n}"), &format!("User {n}"))
}

fn moderator(n: usize) -> Identity {
    watcher(n).with_grants(|g| g.moderate = true)
}

fn host(n: usize) -> Identity {
    watcher(n).with_grants(|g| g.host = true)
}

fn last_counts(out: &[RulesOutput], who: ParticipantId) -> Option<Counts> {
    events_for(out, who)
        .into_iter()
        .rev()
        .find_map(|e| match e {
            ServerEvent::Counts(c) => Some(c),
            _ => None,
        })
}

#[test]
fn joiners_watch_by_default_and_get_a_welcome_with_counts() {
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    let out = drain(&mut r);
    let ev = events_for(&out, a);
    match &ev[0] {
        ServerEvent::Welcome {
            you, state, counts, ..
        } => {
            assert_eq!(*you, a);
            assert_eq!(*state, ParticipantState::Watching);
            assert_eq!(counts.watching, 1);
            assert_eq!(counts.on_camera, 0);
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    assert!(!r.is_on_camera(a));
    assert!(r.receives_media(a));
}

#[test]
fn counts_are_pushed_to_everyone_when_they_change_and_only_then() {
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    drain(&mut r);
    let b = r.join(watcher(2)).unwrap();
    let out = drain(&mut r);
    assert_eq!(last_counts(&out, a).unwrap().watching, 2);
    assert_eq!(last_counts(&out, b).unwrap().watching, 2);

    r.go_on_camera(b).unwrap();
    let out = drain(&mut r);
    let c = last_counts(&out, a).unwrap();
    assert_eq!((c.watching, c.on_camera), (1, 1));

    // A chat does not change counts: no counts event.
    r.command(a, ClientCommand::Chat { text: "hi".into() }, 1)
        .unwrap();
    let out = drain(&mut r);
    assert!(last_counts(&out, a).is_none());

    r.leave(b);
    let out = drain(&mut r);
    let c = last_counts(&out, a).unwrap();
    assert_eq!((c.watching, c.on_camera), (1, 0));
    assert!(out.contains(&RulesOutput::StopMedia(b)));
}

#[test]
fn open_policy_lets_any_watcher_on_camera() {
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    let out = drain(&mut r);
    assert!(events_for(&out, a).contains(&ServerEvent::ShareApproved));
    r.go_on_camera(a).unwrap();
    assert!(r.is_on_camera(a));
    assert_eq!(r.go_on_camera(a), Err(Refusal::AlreadyOnCamera));
}

#[test]
fn on_camera_limit_refuses_the_next_sharer_with_a_clear_message() {
    for max in [1, 10, 20] {
        let mut r = with(RoomKind::Session, |c| {
            c.limits = Limits::new(RoomKind::Session, max, None).unwrap()
        });
        let ids: Vec<_> = (0..=max as usize)
            .map(|i| r.join(watcher(i)).unwrap())
            .collect();
        for id in &ids[..max as usize] {
            r.go_on_camera(*id).unwrap();
        }
        let last = ids[max as usize];
        let refusal = r.go_on_camera(last).unwrap_err();
        assert_eq!(refusal, Refusal::CameraFull { max });
        assert!(refusal.to_string().contains("already is"));
        // A request over the command channel gets the message back as an event.
        drain(&mut r);
        assert!(r.command(last, ClientCommand::RequestShare, 0).is_err());
        let ev = events_for(&drain(&mut r), last);
        assert!(matches!(&ev[0], ServerEvent::Refused { code, .. } if code == "camera_full"));
        // Someone leaves the screen: the next one gets on.
        r.stop_camera(ids[0]);
        r.go_on_camera(last).unwrap();
        assert_eq!(r.counts().on_camera, max);
    }
}

#[test]
fn watcher_limit_is_500_up_to_10_on_camera_and_150_above() {
    for (on_camera, cap) in [(10, 500), (11, 150), (20, 150)] {
        let mut r = with(RoomKind::Session, |c| {
            c.limits = Limits::new(RoomKind::Session, on_camera, None).unwrap()
        });
        for i in 0..cap as usize {
            r.join(watcher(i)).unwrap();
        }
        assert_eq!(r.counts().watching, cap);
        assert_eq!(r.join(watcher(9999)), Err(Refusal::RoomFull { max: cap }));
        // Hosts and recorders still get in.
        r.join(host(10000)).unwrap();
        let rec = watcher(10001).with_grants(|g| {
            g.watch = false;
            g.recorder = true
        });
        r.join(rec).unwrap();
        assert_eq!(r.counts().watching, cap + 1, "the recorder is not counted");
    }
}

#[test]
fn people_on_camera_do_not_use_watcher_places() {
    let mut r = with(RoomKind::Session, |c| {
        c.limits = Limits::new(RoomKind::Session, 2, Some(2)).unwrap()
    });
    let a = r.join(watcher(1)).unwrap();
    r.join(watcher(2)).unwrap();
    assert!(r.join(watcher(3)).is_err());
    r.go_on_camera(a).unwrap();
    r.join(watcher(3)).unwrap();
}

#[test]
fn tokens_without_any_grant_are_refused() {
    let mut r = room(RoomKind::Session);
    let nobody = watcher(1).with_grants(|g| g.watch = false);
    assert_eq!(r.join(nobody), Err(Refusal::NotAllowed));
}

#[test]
fn moderated_request_reaches_moderators_with_profile_and_approval_lets_them_on() {
    let mut r = moderated();
    let m1 = r.join(moderator(1)).unwrap();
    let m2 = r.join(host(2)).unwrap();
    let a = r.join(watcher(3)).unwrap();
    drain(&mut r);

    assert_eq!(r.go_on_camera(a), Err(Refusal::NeedsApproval));
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    let out = drain(&mut r);
    for m in [m1, m2] {
        let ev = events_for(&out, m);
        assert!(
            ev.iter()
                .any(|e| matches!(e, ServerEvent::ShareRequested { participant }
                if participant.id == a && participant.profile.name == "User 3")),
            "{ev:?}"
        );
    }
    assert_eq!(r.participant(a).unwrap().state, ParticipantState::Requested);

    // A watcher cannot approve.
    let w = r.join(watcher(4)).unwrap();
    assert_eq!(
        r.command(w, ClientCommand::ApproveShare { participant: a }, 0),
        Err(Refusal::NotModerator)
    );

    r.command(m1, ClientCommand::ApproveShare { participant: a }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(events_for(&out, a).contains(&ServerEvent::ShareApproved));
    assert!(
        events_for(&out, m2).contains(&ServerEvent::ShareRequestResolved {
            participant: a,
            approved: true
        })
    );
    r.go_on_camera(a).unwrap();
    assert!(r.is_on_camera(a));
}

#[test]
fn moderators_share_directly_in_a_moderated_room() {
    let mut r = moderated();
    let m = r.join(moderator(1)).unwrap();
    r.go_on_camera(m).unwrap();
    let speaker = r.join(watcher(2).with_grants(|g| g.share = true)).unwrap();
    r.go_on_camera(speaker).unwrap();
}

#[test]
fn denied_and_withdrawn_requests_return_to_watching() {
    let mut r = moderated();
    let m = r.join(moderator(1)).unwrap();
    let a = r.join(watcher(2)).unwrap();
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    r.command(m, ClientCommand::DenyShare { participant: a }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(events_for(&out, a).contains(&ServerEvent::ShareDenied));
    assert_eq!(r.go_on_camera(a), Err(Refusal::NeedsApproval));
    assert_eq!(
        r.command(m, ClientCommand::ApproveShare { participant: a }, 0),
        Err(Refusal::NoRequest)
    );

    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    r.command(a, ClientCommand::WithdrawRequest, 0).unwrap();
    let out = drain(&mut r);
    assert!(
        events_for(&out, m).contains(&ServerEvent::ShareRequestResolved {
            participant: a,
            approved: false
        })
    );
    assert_eq!(r.participant(a).unwrap().state, ParticipantState::Watching);
}

#[test]
fn late_moderator_sees_pending_requests_in_welcome() {
    let mut r = moderated();
    let a = r.join(watcher(1)).unwrap();
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    drain(&mut r);
    let m = r.join(moderator(2)).unwrap();
    let ev = events_for(&drain(&mut r), m);
    match &ev[0] {
        ServerEvent::Welcome { share_requests, .. } => {
            assert_eq!(share_requests.len(), 1);
            assert_eq!(share_requests[0].id, a);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn approving_when_camera_is_full_is_refused_to_the_moderator() {
    let mut r = with(RoomKind::Session, |c| {
        c.share_policy = SharePolicy::Moderated;
        c.limits = Limits::new(RoomKind::Session, 1, None).unwrap();
    });
    let m = r.join(moderator(1)).unwrap();
    r.go_on_camera(m).unwrap();
    let a = r.join(watcher(2)).unwrap();
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    drain(&mut r);
    assert_eq!(
        r.command(m, ClientCommand::ApproveShare { participant: a }, 0),
        Err(Refusal::CameraFull { max: 1 })
    );
    let ev = events_for(&drain(&mut r), m);
    assert!(matches!(&ev[0], ServerEvent::Refused { code, .. } if code == "camera_full"));
    assert_eq!(r.participant(a).unwrap().state, ParticipantState::Requested);
}

#[test]
fn moderator_removal_stops_tracks_for_everyone_at_once() {
    let mut r = moderated();
    let m = r.join(moderator(1)).unwrap();
    let a = r.join(watcher(2)).unwrap();
    let w = r.join(watcher(3)).unwrap();
    r.command(a, ClientCommand::RequestShare, 0).unwrap();
    r.command(m, ClientCommand::ApproveShare { participant: a }, 0)
        .unwrap();
    r.go_on_camera(a).unwrap();
    drain(&mut r);

    r.command(m, ClientCommand::RemoveFromCamera { participant: a }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(out.contains(&RulesOutput::StopMedia(a)));
    assert!(events_for(&out, a).contains(&ServerEvent::RemovedFromCamera));
    assert!(events_for(&out, w).contains(&ServerEvent::OffCamera {
        participant: a,
        removed: true
    }));
    assert!(!r.is_on_camera(a));
    // Removed means asking again.
    assert_eq!(r.go_on_camera(a), Err(Refusal::NeedsApproval));
    // Removing someone not on camera is refused.
    assert_eq!(
        r.command(m, ClientCommand::RemoveFromCamera { participant: w }, 0),
        Err(Refusal::TargetNotOnCamera)
    );
    // A watcher cannot remove anyone.
    r.go_on_camera(m).unwrap();
    assert_eq!(
        r.command(w, ClientCommand::RemoveFromCamera { participant: m }, 0),
        Err(Refusal::NotModerator)
    );
}

#[test]
fn invite_only_lets_only_listed_people_share() {
    let mut r = with(RoomKind::Session, |c| {
        c.share_policy = SharePolicy::InviteOnly
    });
    let a = r.join(watcher(1)).unwrap();
    assert_eq!(r.go_on_camera(a), Err(Refusal::InviteOnly));
    r.command(a, ClientCommand::RequestShare, 0).unwrap_err();
    let listed = r.join(watcher(2).with_grants(|g| g.share = true)).unwrap();
    r.go_on_camera(listed).unwrap();
}

#[test]
fn webinar_attendees_cannot_publish_but_hosts_can() {
    let mut r = with(RoomKind::Room, |c| c.theme = Theme::Webinar);
    let a = r.join(watcher(1)).unwrap();
    assert_eq!(r.go_on_camera(a), Err(Refusal::Webinar));
    let h = r.join(host(2)).unwrap();
    r.go_on_camera(h).unwrap();
    // Attendees still chat.
    r.command(
        a,
        ClientCommand::Chat {
            text: "question".into(),
        },
        5,
    )
    .unwrap();
}

#[test]
fn chat_reaches_everyone_and_late_joiners_get_bounded_history() {
    let mut r = with(RoomKind::Session, |c| c.chat_history = 3);
    let a = r.join(watcher(1)).unwrap();
    let b = r.join(watcher(2)).unwrap();
    drain(&mut r);
    for i in 0..5 {
        r.command(
            a,
            ClientCommand::Chat {
                text: format!(" m{i} "),
            },
            1000 + i,
        )
        .unwrap();
    }
    let out = drain(&mut r);
    let got: Vec<_> = events_for(&out, b)
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Chat(m) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);

    let late = r.join(watcher(3)).unwrap();
    let ev = events_for(&drain(&mut r), late);
    match &ev[0] {
        ServerEvent::Welcome { chat, .. } => {
            let texts: Vec<_> = chat.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(texts, ["m2", "m3", "m4"]);
            assert_eq!(chat[0].name, "User 1");
            assert_eq!(chat[2].at_ms, 1004);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_or_overlong_chat_is_refused() {
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    assert!(
        r.command(a, ClientCommand::Chat { text: "  ".into() }, 0)
            .is_err()
    );
    let long = "x".repeat(MAX_CHAT_CHARS + 1);
    assert_eq!(
        r.command(a, ClientCommand::Chat { text: long }, 0),
        Err(Refusal::ChatLength {
            max: MAX_CHAT_CHARS
        })
    );
}

#[test]
fn locked_room_asks_every_host_and_any_host_admits() {
    let mut r = with(RoomKind::Room, |c| c.locked = true);
    let h1 = r.join(host(1)).unwrap();
    let h2 = r.join(host(2)).unwrap();
    drain(&mut r);
    let j = r.join(watcher(3)).unwrap();
    let out = drain(&mut r);
    assert!(matches!(
        events_for(&out, j)[0],
        ServerEvent::Waiting { .. }
    ));
    for h in [h1, h2] {
        assert!(events_for(&out, h).iter().any(|e| matches!(e,
            ServerEvent::JoinRequested { participant } if participant.id == j)));
    }
    // Not counted and no media while waiting; commands refused.
    assert_eq!(r.counts().watching, 2);
    assert!(!r.receives_media(j));
    assert_eq!(
        r.command(
            j,
            ClientCommand::Chat {
                text: "let me in".into()
            },
            0
        ),
        Err(Refusal::WaitingForHost)
    );
    // A non-host cannot admit.
    let w = {
        let mut id = None;
        r.command(h1, ClientCommand::Lock { locked: false }, 0)
            .unwrap();
        id.get_or_insert(r.join(watcher(4)).unwrap());
        r.command(h1, ClientCommand::Lock { locked: true }, 0)
            .unwrap();
        id.unwrap()
    };
    assert_eq!(
        r.command(w, ClientCommand::Admit { participant: j }, 0),
        Err(Refusal::NotHost)
    );
    drain(&mut r);
    r.command(h2, ClientCommand::Admit { participant: j }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(matches!(
        events_for(&out, j)[0],
        ServerEvent::Welcome { .. }
    ));
    assert!(events_for(&out, h1).contains(&ServerEvent::JoinResolved {
        participant: j,
        accepted: true
    }));
    assert!(r.receives_media(j));
    assert_eq!(r.counts().watching, 4);
}

#[test]
fn denied_joiner_is_disconnected_with_a_reason() {
    let mut r = with(RoomKind::Room, |c| c.locked = true);
    let h = r.join(host(1)).unwrap();
    let j = r.join(watcher(2)).unwrap();
    drain(&mut r);
    r.command(h, ClientCommand::Deny { participant: j }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(out.contains(&RulesOutput::Disconnect(j, Refusal::JoinDenied)));
    assert!(r.participant(j).is_none());
}

#[test]
fn host_joining_later_sees_waiting_joiners() {
    let mut r = with(RoomKind::Room, |c| c.locked = true);
    let j = r.join(watcher(1)).unwrap();
    let h = r.join(host(2)).unwrap();
    let ev = events_for(&drain(&mut r), h);
    assert!(matches!(&ev[0], ServerEvent::Welcome { join_requests, .. }
        if join_requests.len() == 1 && join_requests[0].id == j));
}

#[test]
fn backstage_has_five_speakers_who_must_ask_and_screen_share_greys_out_at_five() {
    let mut r = room(RoomKind::Stage);
    let org = r.join(host(0).in_backstage()).unwrap();
    let speakers: Vec<_> = (1..=5)
        .map(|i| r.join(watcher(i).in_backstage()).unwrap())
        .collect();
    // Speakers ask; the organiser accepts.
    assert_eq!(r.go_on_camera(speakers[0]), Err(Refusal::NeedsApproval));
    for s in &speakers[..4] {
        r.command(*s, ClientCommand::RequestShare, 0).unwrap();
        r.command(org, ClientCommand::ApproveShare { participant: *s }, 0)
            .unwrap();
        r.go_on_camera(*s).unwrap();
    }
    assert!(r.counts().screen_share_available);
    r.start_screen_share(speakers[0]).unwrap();
    r.go_on_camera(org).unwrap();
    assert_eq!(r.counts().on_camera, 5);
    assert!(!r.counts().screen_share_available);
    assert_eq!(
        r.start_screen_share(speakers[1]),
        Err(Refusal::ScreenShareFull { max: 4 })
    );
    r.command(speakers[4], ClientCommand::RequestShare, 0)
        .unwrap();
    assert_eq!(
        r.command(
            org,
            ClientCommand::ApproveShare {
                participant: speakers[4]
            },
            0
        ),
        Err(Refusal::CameraFull { max: 5 })
    );
    // The audience never publishes.
    let a = r.join(watcher(9)).unwrap();
    assert_eq!(r.go_on_camera(a), Err(Refusal::StageAudience));
    assert_eq!(r.start_screen_share(a), Err(Refusal::NotOnCamera));
}

#[test]
fn stage_audience_gets_backstage_media_only_while_broadcasting() {
    let mut r = room(RoomKind::Stage);
    let org = r.join(host(0).in_backstage()).unwrap();
    let speaker = r.join(watcher(1).in_backstage()).unwrap();
    let audience = r.join(watcher(2)).unwrap();
    assert!(r.receives_media(speaker));
    assert!(!r.receives_media(audience));
    drain(&mut r);

    // Only an organiser in the backstage broadcasts.
    assert_eq!(
        r.command(speaker, ClientCommand::Broadcast { live: true }, 0),
        Err(Refusal::NotModerator)
    );
    r.command(org, ClientCommand::Broadcast { live: true }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert!(out.contains(&RulesOutput::GateChanged { open: true }));
    assert!(events_for(&out, audience).contains(&ServerEvent::Broadcast { live: true }));
    assert!(r.receives_media(audience));

    r.command(org, ClientCommand::Broadcast { live: false }, 0)
        .unwrap();
    assert!(drain(&mut r).contains(&RulesOutput::GateChanged { open: false }));
    assert!(!r.receives_media(audience));

    let mut session = room(RoomKind::Session);
    let h = session.join(host(1)).unwrap();
    assert_eq!(
        session.command(h, ClientCommand::Broadcast { live: true }, 0),
        Err(Refusal::NoStage)
    );
}

#[test]
fn off_air_the_audience_hears_of_nobody_on_camera_and_on_air_of_everyone() {
    let mut r = room(RoomKind::Stage);
    let org = r.join(host(0).in_backstage()).unwrap();
    let audience = r.join(watcher(1)).unwrap();
    drain(&mut r);
    let names_on_camera = |out: &[RulesOutput], who| {
        events_for(out, who)
            .into_iter()
            .filter_map(|e| match e {
                ServerEvent::OnCamera { participant } => Some(participant.id),
                ServerEvent::Welcome { on_camera, .. } => on_camera.first().map(|p| p.id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let went_off = |out: &[RulesOutput], who| {
        events_for(out, who)
            .into_iter()
            .any(|e| matches!(e, ServerEvent::OffCamera { participant, .. } if participant == org))
    };
    r.go_on_camera(org).unwrap();
    let out = drain(&mut r);
    assert_eq!(
        last_counts(&out, org).unwrap().on_camera,
        1,
        "the backstage knows"
    );
    assert_eq!(names_on_camera(&out, org), [org]);
    assert_eq!(last_counts(&out, audience).unwrap().on_camera, 0, "off air");
    assert!(names_on_camera(&out, audience).is_empty(), "nor who");
    let late = r.join(watcher(2)).unwrap();
    let out = drain(&mut r);
    let welcome = events_for(&out, late)
        .into_iter()
        .find_map(|e| match e {
            ServerEvent::Welcome { counts, .. } => Some(counts),
            _ => None,
        })
        .unwrap();
    assert_eq!(welcome.on_camera, 0, "a late joiner's welcome says so too");
    assert!(names_on_camera(&out, late).is_empty());

    r.command(org, ClientCommand::Broadcast { live: true }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert_eq!(last_counts(&out, audience).unwrap().on_camera, 1, "on air");
    assert_eq!(last_counts(&out, late).unwrap().on_camera, 1);
    assert_eq!(names_on_camera(&out, audience), [org], "and who, once");
    assert_eq!(names_on_camera(&out, late), [org]);
    assert!(names_on_camera(&out, org).is_empty(), "the backstage knew");
    r.command(org, ClientCommand::Broadcast { live: false }, 0)
        .unwrap();
    let out = drain(&mut r);
    assert_eq!(
        last_counts(&out, audience).unwrap().on_camera,
        0,
        "off air again"
    );
    assert!(went_off(&out, audience), "the audience's tiles go");
    assert!(!went_off(&out, org), "the speaker is still on camera");
    assert_eq!(r.counts().on_camera, 1, "the room's own count is unchanged");
    r.leave(org);
    let out = drain(&mut r);
    assert!(!went_off(&out, audience), "off air, nothing to tell");
}

#[test]
fn backstage_chat_stays_in_the_backstage() {
    let mut r = room(RoomKind::Stage);
    let b = r.join(watcher(1).in_backstage()).unwrap();
    let a = r.join(watcher(2)).unwrap();
    drain(&mut r);
    r.command(
        b,
        ClientCommand::Chat {
            text: "rehearsal".into(),
        },
        0,
    )
    .unwrap();
    r.command(
        a,
        ClientCommand::Chat {
            text: "hello stage".into(),
        },
        0,
    )
    .unwrap();
    let out = drain(&mut r);
    let texts = |who| {
        events_for(&out, who)
            .into_iter()
            .filter_map(|e| match e {
                ServerEvent::Chat(m) => Some(m.text),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(b), ["rehearsal"]);
    assert_eq!(texts(a), ["hello stage"]);
}

#[test]
fn drain_refuses_joins_keeps_peers_and_closes_at_the_grace_deadline() {
    let t0 = Instant::now();
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    let b = r.join(watcher(2)).unwrap();
    r.go_on_camera(b).unwrap();
    drain(&mut r);

    r.begin_drain(t0, Duration::from_secs(30));
    assert!(r.is_draining());
    assert_eq!(r.join(watcher(3)), Err(Refusal::Draining));
    let out = drain(&mut r);
    assert!(events_for(&out, a).contains(&ServerEvent::Draining { grace_ms: 30_000 }));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(30)));

    // Existing peers stay and keep working.
    r.handle_timeout(t0 + Duration::from_secs(29));
    assert!(drain(&mut r).is_empty());
    r.command(
        a,
        ClientCommand::Chat {
            text: "still here".into(),
        },
        0,
    )
    .unwrap();
    r.leave(a);
    assert!(!r.is_drained());

    r.handle_timeout(t0 + Duration::from_secs(30));
    let out = drain(&mut r);
    assert!(out.contains(&RulesOutput::StopMedia(b)));
    assert!(out.contains(&RulesOutput::Disconnect(b, Refusal::Draining)));
    assert!(r.is_drained());
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn a_room_that_moves_asks_everyone_to_rejoin_and_closes_them_after_the_notice() {
    let t0 = Instant::now();
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    let b = r.join(watcher(2)).unwrap();
    r.go_on_camera(b).unwrap();
    drain(&mut r);

    r.begin_leave(t0, Duration::from_secs(1));
    assert_eq!(
        r.join(watcher(3)),
        Err(Refusal::Draining),
        "no joins while moving"
    );
    let out = drain(&mut r);
    let moving = ServerEvent::Reconnect {
        reason: "room_moving".into(),
    };
    for who in [a, b] {
        let events = events_for(&out, who);
        assert!(
            events.contains(&moving),
            "{who:?} is asked to re-join: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ServerEvent::Draining { .. })),
            "a move is not the room ending: {events:?}"
        );
    }
    // Asking again (the operator retries) changes nothing.
    r.begin_leave(t0 + Duration::from_millis(500), Duration::from_secs(1));
    assert!(drain(&mut r).is_empty());

    r.handle_timeout(t0 + Duration::from_secs(1));
    let out = drain(&mut r);
    assert!(out.contains(&RulesOutput::StopMedia(b)));
    assert!(out.contains(&RulesOutput::Disconnect(a, Refusal::Draining)));
    assert!(r.is_drained());
}

#[test]
fn drain_completes_early_when_everyone_leaves() {
    let t0 = Instant::now();
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    r.begin_drain(t0, Duration::from_secs(30));
    r.leave(a);
    assert!(r.is_drained());
}

#[test]
fn leaving_clears_pending_requests_from_moderator_and_host_panels() {
    let mut r = with(RoomKind::Room, |c| {
        c.share_policy = SharePolicy::Moderated;
        c.locked = true;
    });
    let h = r.join(host(1)).unwrap();
    let lobby = r.join(watcher(2)).unwrap();
    r.command(h, ClientCommand::Lock { locked: false }, 0)
        .unwrap();
    let req = r.join(watcher(3)).unwrap();
    r.command(req, ClientCommand::RequestShare, 0).unwrap();
    drain(&mut r);
    r.leave(lobby);
    r.leave(req);
    let ev = events_for(&drain(&mut r), h);
    assert!(ev.contains(&ServerEvent::JoinResolved {
        participant: lobby,
        accepted: false
    }));
    assert!(ev.contains(&ServerEvent::ShareRequestResolved {
        participant: req,
        approved: false
    }));
}

#[test]
fn events_serialize_as_tagged_json() {
    let e = ServerEvent::Counts(Counts {
        watching: 3,
        on_camera: 1,
        screen_share_available: true,
    });
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["type"], "counts");
    assert_eq!(json["watching"], 3);
    let cmd: ClientCommand =
        serde_json::from_str(r#"{"type":"approve_share","participant":7}"#).unwrap();
    assert_eq!(
        cmd,
        ClientCommand::ApproveShare {
            participant: ParticipantId(7)
        }
    );
}

#[test]
fn attendance_reports_unique_joiners_and_peaks_without_recorders_or_refused_joiners() {
    let mut r = with(RoomKind::Room, |c| c.locked = true);
    let h = r.join(host(1)).unwrap();
    let a = r.join(watcher(2)).unwrap();
    let b = r.join(watcher(3)).unwrap();
    let denied = r.join(watcher(4)).unwrap();
    r.command(h, ClientCommand::Admit { participant: a }, 0)
        .unwrap();
    r.command(h, ClientCommand::Admit { participant: b }, 0)
        .unwrap();
    r.command(
        h,
        ClientCommand::Deny {
            participant: denied,
        },
        0,
    )
    .unwrap();
    assert_eq!(r.counts().watching, 3);
    r.go_on_camera(a).unwrap();
    r.go_on_camera(b).unwrap();
    r.leave(a);
    r.leave(b);
    // Someone reloads the page: the same identity again; a recorder joins.
    let again = r.join(watcher(2)).unwrap();
    r.command(h, ClientCommand::Admit { participant: again }, 0)
        .unwrap();
    r.join(watcher(5).with_grants(|g| {
        g.watch = false;
        g.recorder = true
    }))
    .unwrap();
    assert_eq!(
        r.attendance(),
        Attendance {
            unique_joiners: 3,
            peak_watching: 3,
            peak_on_camera: 2,
        }
    );
}

#[test]
fn a_relay_is_hidden_like_a_recorder_not_counted_capped_shown_or_an_attendee() {
    let mut r = with(RoomKind::Room, |c| {
        c.locked = true;
        c.limits = Limits::new(RoomKind::Room, 2, Some(2)).unwrap();
    });
    let h = r.join(host(1)).unwrap();
    let a = r.join(watcher(2)).unwrap();
    r.command(h, ClientCommand::Admit { participant: a }, 0)
        .unwrap();
    assert_eq!(r.counts().watching, 2);
    let relay = |n| {
        watcher(n).with_grants(|g| {
            g.watch = false;
            g.relay = true
        })
    };
    // Past the cap, past the lock, and nobody sees a count change or a join request.
    drain(&mut r);
    let r1 = r.join(relay(3)).unwrap();
    let r2 = r.join(relay(4)).unwrap();
    let out = drain(&mut r);
    assert!(last_counts(&out, h).is_none(), "{out:?}");
    assert!(matches!(
        events_for(&out, r1)[0],
        ServerEvent::Welcome { .. }
    ));
    assert_eq!(r.counts().watching, 2);
    assert_eq!(r.attendance().unique_joiners, 2);
    assert_eq!(r.check_on_camera(r2), Err(Refusal::NotAllowed));
}

#[test]
fn one_user_is_in_the_room_a_few_times_at_most_machines_any() {
    let mut r = room(RoomKind::Session);
    for _ in 0..MAX_JOINS_PER_USER {
        r.join(watcher(1)).unwrap();
    }
    assert_eq!(
        r.join(watcher(1)),
        Err(Refusal::TooManyJoins {
            max: MAX_JOINS_PER_USER
        })
    );
    assert!(r.join(watcher(2)).is_ok(), "others are not affected");
    let relay = watcher(3).with_grants(|g| g.relay = true);
    for _ in 0..(MAX_JOINS_PER_USER + 2) {
        r.join(relay.clone()).unwrap();
    }
}

#[test]
fn a_locked_rooms_lobby_holds_one_request_per_user_a_bounded_number_and_counts_as_occupied() {
    let mut r = with(RoomKind::Room, |c| {
        c.locked = true;
        c.limits = Limits::new(RoomKind::Room, 2, Some(4)).unwrap();
    });
    let h = r.join(host(0)).unwrap();
    r.join(watcher(1)).unwrap();
    assert_eq!(r.join(watcher(1)), Err(Refusal::AlreadyWaiting));
    r.join(watcher(2)).unwrap();
    r.join(watcher(3)).unwrap();
    assert_eq!(
        r.join(watcher(4)),
        Err(Refusal::RoomFull { max: 4 }),
        "the host watching and three waiting fill a room of four"
    );
    let out = drain(&mut r);
    let asked = events_for(&out, h)
        .iter()
        .filter(|e| matches!(e, ServerEvent::JoinRequested { .. }))
        .count();
    assert_eq!(asked, 3, "the host is asked once per user");

    let mut big = with(RoomKind::Room, |c| c.locked = true);
    for n in 0..MAX_LOBBY {
        big.join(watcher(n)).unwrap();
    }
    assert_eq!(
        big.join(watcher(MAX_LOBBY)),
        Err(Refusal::LobbyFull { max: MAX_LOBBY })
    );
    assert!(big.join(host(9999)).is_ok(), "hosts still enter");
}

#[test]
fn chat_is_paced_per_participant() {
    let mut r = room(RoomKind::Session);
    let a = r.join(watcher(1)).unwrap();
    let b = r.join(watcher(2)).unwrap();
    for i in 0..CHAT_BURST as u64 {
        let text = format!("m{i}");
        r.command(a, ClientCommand::Chat { text }, 1_000 + i)
            .unwrap();
    }
    assert_eq!(
        r.command(
            a,
            ClientCommand::Chat {
                text: "flood".into()
            },
            1_100
        ),
        Err(Refusal::ChatTooFast { wait_s: 5 })
    );
    assert!(
        r.command(b, ClientCommand::Chat { text: "hi".into() }, 1_100)
            .is_ok()
    );
    assert!(
        r.command(
            a,
            ClientCommand::Chat {
                text: "later".into()
            },
            1_000 + CHAT_WINDOW_MS
        )
        .is_ok()
    );
}

#[test]
fn a_dropped_events_socket_resumes_the_same_participant_with_the_room_as_it_is_now() {
    let mut r = with(RoomKind::Session, |c| c.instance = 7);
    let a = r.join(watcher(1)).unwrap();
    let b = r.join(watcher(2)).unwrap();
    r.command(
        b,
        ClientCommand::Chat {
            text: "while you were away".into(),
        },
        1,
    )
    .unwrap();
    drain(&mut r);

    // Same user, same run: a fresh welcome with what happened meanwhile; nobody else hears of it.
    r.resume(a, "u1", 7).unwrap();
    let out = drain(&mut r);
    match &events_for(&out, a)[..] {
        [
            ServerEvent::Welcome {
                you,
                instance,
                counts,
                chat,
                ..
            },
        ] => {
            assert_eq!((*you, *instance, counts.watching), (a, 7, 2));
            assert_eq!(
                chat.last().map(|m| m.text.as_str()),
                Some("while you were away")
            );
        }
        other => panic!("expected one welcome, got {other:?}"),
    }
    assert!(
        events_for(&out, b).is_empty(),
        "a resume is not a join: {out:?}"
    );
    assert_eq!(r.counts().watching, 2);

    // Another user, another run of the room (a replaced pod), or someone who left: refused.
    assert_eq!(r.resume(a, "u2", 7), Err(Refusal::NotResumable));
    assert_eq!(r.resume(a, "u1", 8), Err(Refusal::NotResumable));
    r.leave(a);
    assert_eq!(r.resume(a, "u1", 7), Err(Refusal::NotResumable));
}

#[test]
fn a_resume_in_the_lobby_is_told_to_wait_again() {
    let mut r = with(RoomKind::Room, |c| {
        c.locked = true;
        c.instance = 3;
    });
    let h = r.join(host(1)).unwrap();
    let g = r.join(watcher(2)).unwrap();
    drain(&mut r);
    r.resume(g, "u2", 3).unwrap();
    let out = drain(&mut r);
    assert!(matches!(
        &events_for(&out, g)[..],
        [ServerEvent::Waiting { .. }]
    ));
    assert!(
        events_for(&out, h).is_empty(),
        "the host is not asked twice: {out:?}"
    );
}
