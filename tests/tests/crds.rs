//! The roundtable.dev API on a real kube-apiserver: the CRDs install, every example applies,
//! bad specs are refused with a message that says what to fix, and kubectl shows the columns
//! a person wants.

use std::path::{Path, PathBuf};

use roundtable_e2e::Cluster;

/// The shared cluster with the CRDs installed and Established.
async fn cluster() -> &'static Cluster {
    let cluster = Cluster::shared().await.expect("test control plane starts");
    cluster
        .install_crds()
        .await
        .expect("the API server accepts the CRDs");
    cluster
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

async fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let out = cluster.kubectl_with_stdin(args, stdin).await.unwrap();
    (out.success(), format!("{}{}", out.stdout, out.stderr))
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let cluster = cluster().await;
    let (ok, out) = kubectl(cluster, &["get", "crd", "-o", "name"], None).await;
    assert!(ok, "{out}");
    for kind in ["liveevents", "sessions", "stages", "rooms"] {
        assert!(
            out.contains(&format!("{kind}.roundtable.dev")),
            "{kind} listed in {out}"
        );
    }
    // The category and short names work as a user would type them.
    let ns = cluster.namespace("crd-names").await.unwrap();
    for what in ["roundtable", "lev", "ses", "stg", "rms"] {
        let (ok, out) = kubectl(cluster, &["get", what, "-n", &ns.name], None).await;
        assert!(ok, "kubectl get {what}: {out}");
    }
}

#[tokio::test]
async fn every_example_applies() {
    let cluster = cluster().await;
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the examples are there: {files:?}");
    for file in &files {
        let ns = cluster.namespace("example").await.unwrap();
        let path = file.to_str().unwrap();
        let (ok, out) = kubectl(cluster, &["apply", "-n", &ns.name, "-f", path], None).await;
        assert!(ok, "kubectl apply -f {path}: {out}");
        assert!(out.contains("created"), "{path}: {out}");
    }

    // Defaults are filled in by the API server, so what a user reads back is complete.
    let ns = cluster.namespace("example-defaults").await.unwrap();
    let gala = examples_dir().join("gala.yaml");
    let (ok, out) = kubectl(
        cluster,
        &["apply", "-n", &ns.name, "-f", gala.to_str().unwrap()],
        None,
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        cluster,
        &[
            "get",
            "session",
            "gala-future-of-work",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.maxParticipants} {.spec.watch.policy} {.spec.lifecycle}",
        ],
        None,
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "10 AnyTicket Scheduled");
}

/// A session with the given spec lines under `spec:` (event and title included).
fn session(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata:\n  name: {name}\nspec:\n  event: gala\n  title: A roundtable\n{extra}"
    )
}

fn stage(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\nspec:\n  event: gala\n  title: Keynote\n{extra}"
    )
}

fn room(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: Room\nmetadata:\n  name: {name}\nspec:\n{extra}"
    )
}

fn event(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: LiveEvent\nmetadata:\n  name: {name}\nspec:\n  title: Gala\n{extra}"
    )
}

const ROOM_OK: &str = "  host: ada\n  slug: board\n  hosts: [ada@example.com]\n";
const EVENT_TIMES: &str = "  start: \"2026-12-10T17:00:00Z\"\n  end: \"2026-12-10T22:00:00Z\"\n";

#[tokio::test]
async fn invalid_specs_are_refused_with_a_message_that_says_what_to_fix() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crd-invalid").await.unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "21 people on camera",
            session("p21", "  maxParticipants: 21\n"),
            "maxParticipants must be between 1 and 20 people on camera",
        ),
        (
            "nobody on camera",
            session("p0", "  maxParticipants: 0\n"),
            "maxParticipants must be between 1 and 20 people on camera",
        ),
        (
            "200 watchers with 15 participants",
            session("w200", "  maxParticipants: 15\n  maxWatchers: 200\n"),
            "with 11 to 20 on camera at most 150",
        ),
        (
            "600 watchers with the default 10 participants",
            session("w600", "  maxWatchers: 600\n"),
            "with up to 10 on camera (maxParticipants) at most 500 may watch",
        ),
        (
            "600 watchers with autoscaling written down but off",
            session(
                "w600off",
                "  maxWatchers: 600\n  autoscaling:\n    enabled: false\n",
            ),
            "with up to 10 on camera (maxParticipants) at most 500 may watch",
        ),
        (
            "more watchers than the relays hold",
            session(
                "w2000",
                "  maxWatchers: 2000\n  autoscaling:\n    enabled: true\n    maxRelays: 3\n",
            ),
            "maxWatchers is too high: with autoscaling at most autoscaling.maxRelays × autoscaling.watchersPerRelay may watch",
        ),
        (
            "relays of a 20-on-camera session counted at 500 each",
            session(
                "w20x",
                "  maxParticipants: 20\n  maxWatchers: 2000\n  autoscaling:\n    enabled: true\n",
            ),
            "maxWatchers is too high: with autoscaling",
        ),
        (
            "a CPU request that is not a quantity",
            event(
                "cpulots",
                &format!("{EVENT_TIMES}  sfu:\n    resources:\n      requests: {{cpu: lots}}\n"),
            ),
            "every CPU and memory value must be a Kubernetes quantity",
        ),
        (
            "a memory limit that is not a quantity",
            room(
                "memlots",
                &format!("{ROOM_OK}  sfu:\n    resources:\n      limits: {{memory: plenty}}\n"),
            ),
            "every CPU and memory value must be a Kubernetes quantity",
        ),
        (
            "an advertised address that is neither an IP nor a DNS name",
            event(
                "badaddr",
                &format!("{EVENT_TIMES}  sfu:\n    network:\n      advertiseAddress: \"not an address!! <script>\"\n"),
            ),
            "advertiseAddress must be an IP address or a DNS name",
        ),
        (
            "fewest relays above the most",
            session(
                "minmax",
                "  autoscaling:\n    enabled: true\n    minRelays: 4\n    maxRelays: 2\n",
            ),
            "autoscaling.minRelays must not exceed autoscaling.maxRelays",
        ),
        (
            "a relay taking more than one pod's watchers",
            session(
                "per900",
                "  autoscaling:\n    enabled: true\n    watchersPerRelay: 900\n",
            ),
            "autoscaling.watchersPerRelay must be between 1 and 500",
        ),
        (
            "a backstage above the relays' capacity",
            stage(
                "s6000",
                "  backstage:\n    maxWatchers: 6000\n  autoscaling:\n    enabled: true\n",
            ),
            "backstage.maxWatchers is too high: with autoscaling",
        ),
        (
            "negative watchers",
            session("wneg", "  maxWatchers: -1\n"),
            "maxWatchers cannot be negative",
        ),
        (
            "session ends before it starts",
            session(
                "endbefore",
                "  start: \"2026-12-10T18:00:00Z\"\n  end: \"2026-12-10T17:00:00Z\"\n",
            ),
            "spec.end: Invalid value: end must be after start",
        ),
        (
            "event ends when it starts",
            event(
                "same",
                "  start: \"2026-12-10T18:00:00Z\"\n  end: \"2026-12-10T18:00:00Z\"\n",
            ),
            "spec.end: Invalid value: end must be after start",
        ),
        (
            "Moderated without moderators",
            session("modnone", "  share:\n    policy: Moderated\n"),
            "a Moderated session needs at least one moderator in share.moderators",
        ),
        (
            "InviteOnly without invitees",
            session("invnone", "  share:\n    policy: InviteOnly\n"),
            "an InviteOnly session needs at least one person in share.invitees",
        ),
        (
            "unknown share policy",
            session("closed", "  share:\n    policy: Closed\n"),
            "supported values: \"Open\", \"Moderated\", \"InviteOnly\"",
        ),
        (
            "ticket-only session without ticket types",
            session("vipnone", "  watch:\n    policy: TicketTypes\n"),
            "watch.policy TicketTypes needs at least one ticket type in watch.ticketTypes",
        ),
        (
            "ticket types with the AnyTicket policy",
            session("vipany", "  watch:\n    ticketTypes: [vip]\n"),
            "watch.ticketTypes only applies with watch.policy TicketTypes",
        ),
        (
            "the same moderator twice",
            session(
                "moddup",
                "  share:\n    policy: Moderated\n    moderators: [ada@example.com, ada@example.com]\n",
            ),
            "Duplicate value: \"ada@example.com\"",
        ),
        (
            "session without a title",
            "apiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata:\n  name: notitle\nspec:\n  event: gala\n".to_string(),
            "spec.title: Required value",
        ),
        (
            "six speakers backstage",
            stage("s6", "  backstage:\n    maxSpeakers: 6\n"),
            "a backstage holds 1 to 5 speakers on screen (backstage.maxSpeakers)",
        ),
        (
            "600 watching the backstage",
            stage("s600", "  backstage:\n    maxWatchers: 600\n"),
            "at most 500 may watch the backstage (backstage.maxWatchers)",
        ),
        (
            "host slug with capitals and underscore",
            room("badhost", "  host: Ada_L\n  slug: board\n  hosts: [ada@example.com]\n"),
            "host must be a slug: lowercase letters, digits and '-'",
        ),
        (
            "room slug starting with a dash",
            room("badslug", "  host: ada\n  slug: -board\n  hosts: [ada@example.com]\n"),
            "slug must be lowercase letters, digits and '-'",
        ),
        (
            "room slug longer than a DNS label",
            room(
                "longslug",
                &format!("  host: ada\n  slug: {}\n  hosts: [ada@example.com]\n", "a".repeat(64)),
            ),
            "spec.slug: Too long: may not be more than 63 bytes",
        ),
        (
            "room without hosts",
            room("nohosts", "  host: ada\n  slug: board\n  hosts: []\n"),
            "a room needs at least one host in hosts",
        ),
        (
            "email domain with an @",
            room(
                "baddomain",
                &format!("{ROOM_OK}  allowedEmailDomains: [\"@example.com\"]\n"),
            ),
            "allowedEmailDomains must be lowercase domain names such as example.com",
        ),
        (
            "unknown room theme",
            room("badtheme", &format!("{ROOM_OK}  theme: Party\n")),
            "supported values: \"Meeting\", \"Webinar\"",
        ),
        (
            "ticket type name with a space",
            event(
                "badticket",
                &format!("{EVENT_TIMES}  ticketTypes:\n    - name: VIP Pass\n"),
            ),
            "a ticket type name must be lowercase letters, digits and '-'",
        ),
        (
            "cover image that is not a URL",
            event(
                "badcover",
                &format!("{EVENT_TIMES}  coverImage: ftp://example.com/cover.jpg\n"),
            ),
            "coverImage must be an http(s) URL",
        ),
    ];
    assert!(cases.len() >= 15);

    let mut failures = Vec::new();
    for (what, manifest, message) in &cases {
        let (ok, out) = kubectl(
            cluster,
            &["create", "-n", &ns.name, "-f", "-"],
            Some(manifest),
        )
        .await;
        if ok {
            failures.push(format!("{what}: accepted, but should be refused"));
        } else if !out.contains(message) {
            failures.push(format!(
                "{what}: refused with\n  {}\nexpected to contain\n  {message}",
                out.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn url_slugs_and_the_event_of_a_session_cannot_change() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crd-immutable").await.unwrap();
    for manifest in [
        room("board", ROOM_OK),
        session("s1", ""),
        session("made", "  createdBy: ada@example.com\n"),
    ] {
        let (ok, out) = kubectl(
            cluster,
            &["create", "-n", &ns.name, "-f", "-"],
            Some(&manifest),
        )
        .await;
        assert!(ok, "{out}");
    }
    let changes = [
        (
            "room",
            "board",
            r#"{"spec":{"slug":"boardroom"}}"#,
            "slug is part of the room's URL and cannot change",
        ),
        (
            "room",
            "board",
            r#"{"spec":{"host":"grace"}}"#,
            "host is part of the room's URL and cannot change",
        ),
        (
            "session",
            "s1",
            r#"{"spec":{"event":"other"}}"#,
            "a session cannot move to another event",
        ),
        (
            "session",
            "made",
            r#"{"spec":{"createdBy":"mallory@example.com"}}"#,
            "createdBy cannot change",
        ),
        // Removing it first would let a second patch set another value.
        (
            "session",
            "made",
            r#"{"spec":{"createdBy":null}}"#,
            "createdBy cannot change",
        ),
        (
            "session",
            "s1",
            r#"{"spec":{"createdBy":"mallory@example.com"}}"#,
            "createdBy cannot change",
        ),
    ];
    for (kind, name, patch, message) in changes {
        let (ok, out) = kubectl(
            cluster,
            &[
                "patch", kind, name, "-n", &ns.name, "--type", "merge", "-p", patch,
            ],
            None,
        )
        .await;
        assert!(!ok, "{kind} {name} {patch} should be refused: {out}");
        assert!(out.contains(message), "{kind} {patch}: {out}");
    }
    // Changing what may change still works.
    let (ok, out) = kubectl(
        cluster,
        &[
            "patch",
            "room",
            "board",
            "-n",
            &ns.name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"locked":true}}"#,
        ],
        None,
    )
    .await;
    assert!(ok, "locking a room is allowed: {out}");
}

/// Sets status fields through the status subresource, as the operator will.
async fn set_status(cluster: &Cluster, ns: &str, kind: &str, name: &str, status: &str) {
    let patch = format!(r#"{{"status":{status}}}"#);
    let (ok, out) = kubectl(
        cluster,
        &[
            "patch",
            kind,
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            &patch,
        ],
        None,
    )
    .await;
    assert!(ok, "status patch of {kind}/{name}: {out}");
}

fn header_and_row<'a>(table: &'a str, name: &str) -> (Vec<&'a str>, &'a str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let columns = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("a row for {name} in\n{table}"));
    (columns, row)
}

#[tokio::test]
async fn kubectl_get_shows_phase_counts_endpoint_and_age() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crd-columns").await.unwrap();
    for file in ["gala.yaml", "stage.yaml", "locked-room.yaml"] {
        let path = examples_dir().join(file);
        let (ok, out) = kubectl(
            cluster,
            &["apply", "-n", &ns.name, "-f", path.to_str().unwrap()],
            None,
        )
        .await;
        assert!(ok, "{out}");
    }
    set_status(
        cluster,
        &ns.name,
        "session",
        "gala-future-of-work",
        r#"{"phase":"Live","onCamera":3,"watching":42,"endpoint":"203.0.113.7:31000"}"#,
    )
    .await;
    set_status(
        cluster,
        &ns.name,
        "stage",
        "gala-main-stage",
        r#"{"phase":"Live","onCamera":2,"watching":120,"endpoint":"203.0.113.8:31001"}"#,
    )
    .await;
    set_status(
        cluster,
        &ns.name,
        "room",
        "ada-board",
        r#"{"phase":"Idle"}"#,
    )
    .await;
    set_status(
        cluster,
        &ns.name,
        "liveevent",
        "gala",
        r#"{"phase":"Live","sessionsLive":1,"watching":162,"onCamera":5}"#,
    )
    .await;

    let expectations: [(&str, &str, &[&str], &[&str]); 4] = [
        (
            "sessions",
            "gala-future-of-work",
            &[
                "NAME",
                "EVENT",
                "PHASE",
                "ON CAMERA",
                "WATCHING",
                "ENDPOINT",
                "AGE",
            ],
            &["gala", "Live", "3", "42", "203.0.113.7:31000"],
        ),
        (
            "stages",
            "gala-main-stage",
            &[
                "NAME",
                "EVENT",
                "PHASE",
                "BROADCASTING",
                "ON CAMERA",
                "WATCHING",
                "ENDPOINT",
                "AGE",
            ],
            &["gala", "Live", "false", "2", "120", "203.0.113.8:31001"],
        ),
        (
            "rooms",
            "ada-board",
            &[
                "NAME",
                "HOST",
                "SLUG",
                "THEME",
                "LOCKED",
                "PHASE",
                "ON CAMERA",
                "WATCHING",
                "ENDPOINT",
                "AGE",
            ],
            &["ada", "board", "Meeting", "true", "Idle"],
        ),
        (
            "liveevents",
            "gala",
            &[
                "NAME",
                "TITLE",
                "START",
                "PHASE",
                "SESSIONS LIVE",
                "WATCHING",
                "ON CAMERA",
                "AGE",
            ],
            &[
                "Winter Gala 2026",
                "2026-12-10T17:00:00Z",
                "Live",
                "1",
                "162",
                "5",
            ],
        ),
    ];
    for (kind, name, columns, values) in expectations {
        let (ok, out) = kubectl(cluster, &["get", kind, "-n", &ns.name], None).await;
        assert!(ok, "{out}");
        let (header, row) = header_and_row(&out, name);
        assert_eq!(header, columns, "columns of kubectl get {kind}");
        for value in values {
            assert!(
                row.contains(value),
                "kubectl get {kind}: row for {name} shows {value}:\n{out}"
            );
        }
    }

    // -o wide adds the share policy and start of sessions.
    let (ok, out) = kubectl(
        cluster,
        &["get", "sessions", "-n", &ns.name, "-o", "wide"],
        None,
    )
    .await;
    assert!(ok, "{out}");
    let (header, row) = header_and_row(&out, "gala-future-of-work");
    assert!(
        header.contains(&"SHARE") && header.contains(&"START"),
        "{out}"
    );
    assert!(
        row.contains("Open") && row.contains("2026-12-10T18:00:00Z"),
        "{out}"
    );
}

#[tokio::test]
async fn sessions_scale_by_relays_through_the_scale_subresource() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crd-scale").await.unwrap();
    let (ok, out) = kubectl(
        cluster,
        &["create", "-n", &ns.name, "-f", "-"],
        Some(&session("big", "")),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        cluster,
        &["scale", "session", "big", "-n", &ns.name, "--replicas=3"],
        None,
    )
    .await;
    assert!(ok, "kubectl scale: {out}");
    let (ok, out) = kubectl(
        cluster,
        &[
            "get",
            "session",
            "big",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.relays}",
        ],
        None,
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "3");
}

#[tokio::test]
async fn autoscaling_lifts_the_watcher_cap_to_the_relays_capacity_with_defaults_filled_in() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crd-autoscale").await.unwrap();
    for manifest in [
        session(
            "huge",
            "  maxWatchers: 5000\n  autoscaling:\n    enabled: true\n",
        ),
        session(
            "wide",
            "  maxParticipants: 20\n  maxWatchers: 1500\n  autoscaling:\n    enabled: true\n",
        ),
        stage(
            "keynote",
            "  backstage:\n    maxWatchers: 2000\n  autoscaling:\n    enabled: true\n    maxRelays: 4\n",
        ),
    ] {
        let (ok, out) = kubectl(
            cluster,
            &["create", "-n", &ns.name, "-f", "-"],
            Some(&manifest),
        )
        .await;
        assert!(ok, "{manifest}: {out}");
    }
    let (ok, out) = kubectl(
        cluster,
        &[
            "get",
            "session",
            "huge",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.autoscaling.minRelays} {.spec.autoscaling.maxRelays} {.spec.autoscaling.watchersPerRelay} {.spec.autoscaling.headroom} {.spec.autoscaling.scaleDownDelaySeconds}",
        ],
        None,
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "0 10 500 50 300", "defaults a reader sees");
}

#[tokio::test]
async fn kubectl_explain_describes_the_fields() {
    let cluster = cluster().await;
    // The API server publishes a new CRD's OpenAPI schema a few seconds after it becomes
    // Established; kubectl explain reads that schema.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (ok, out) = loop {
        let (ok, out) = kubectl(cluster, &["explain", "session.spec.share"], None).await;
        if ok || std::time::Instant::now() > deadline {
            break (ok, out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(ok, "{out}");
    assert!(out.contains("Request to share audio and video"), "{out}");
    assert!(out.contains("moderators"), "{out}");
    let (ok, out) = kubectl(cluster, &["explain", "room.spec.slug"], None).await;
    assert!(ok, "{out}");
    assert!(out.contains("/<host>/<slug>"), "{out}");
}
