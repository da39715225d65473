//! ICE-TCP on the shared port behind a hostPort, as a Kubernetes node with the CNI `bridge` and
//! `portmap` plugins has one (issue 17). The bed, made of this process's own namespaces, links,
//! addresses and iptables chains:
//!
//! ```text
//!  client ns 10.233.n.2 ─veth─ 10.233.n.1  node  bridge 10.231.n.1 ─veth─ 10.231.n.2 pod ns
//! ```
//!
//! The bridge's address is the node's address, as on the real-node test's node. sfu-node runs
//! in the pod as the operator starts it: bound to the pod's address, signalling and media on
//! one port number, advertising the node's address. portmap's rules DNAT that port on the
//! node's address to the pod (`nat` PREROUTING and OUTPUT, `--dst-type LOCAL`) and
//! MASQUERADE what it marks (0x2000: sources 127.0.0.1 and the pod itself). The client
//! namespace reaches the node through the host, as a remote attendee does, behind a NAT of its
//! own that gives the SFU another address and port than the client's (a home router).
//!
//! A publisher without UDP publishes from the node itself (through OUTPUT's DNAT), and two
//! watchers without UDP watch: one on the node, one in the client namespace (a second run of
//! this binary, [`remote_watcher`]). Both must get video. (The second watcher's first frame
//! waits for the next keyframe request the room allows, ~0.5 s after the first's.)
//!
//! Needs root, `ip` and `iptables`; skipped with a message without them. Everything it makes
//! carries this process's id and is removed when the test ends, passed or failed; what a
//! killed run left is removed by the next ([`sweep`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sfu_node::client::{ClientPeer, ClientRole, Transport, WatchOutcome, Watcher, http_request};

mod support;

const KEY: &str = "ice-tcp-nat-test-key";
const ROOM: &str = "nat";
/// The SFU's port in the pod and on the node (a hostPort keeps the number).
const PORT: u16 = 40_417;
/// How long the publisher publishes and the watchers watch.
const MEDIA_FOR: Duration = Duration::from_secs(6);
/// Set for the run of [`remote_watcher`] in the client namespace: the node's base URL.
const REMOTE_ENV: &str = "ICE_TCP_NAT_REMOTE_WATCHER";

/// Runs a command; its error output if it failed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("iptables", "--version")] {
        if let Err(e) = run(tool, &[arg]) {
            return Some(e);
        }
    }
    None
}

/// The bed of one test (see the module's text); removed on drop, as far as it was made.
struct Bed {
    id: u32,
    pod_ns: String,
    client_ns: String,
    pod: Ipv4Addr,
    /// The node's address: the bridge's.
    node: Ipv4Addr,
    client: Ipv4Addr,
    /// `ip_forward` was off and this test turned it on.
    restore_forwarding: bool,
}

const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

impl Bed {
    fn create() -> Result<Bed, String> {
        sweep();
        let mut bed = Bed::of(std::process::id());
        // On failure the bed is dropped here, which removes what was made.
        bed.set_up()?;
        Ok(bed)
    }

    /// The names and addresses of process `id`'s bed.
    fn of(id: u32) -> Bed {
        let n = (id % 250) as u8 + 1;
        Bed {
            id: id % 10_000_000,
            pod_ns: format!("rt-nat-pod-{id}"),
            client_ns: format!("rt-nat-client-{id}"),
            pod: Ipv4Addr::new(10, 231, n, 2),
            node: Ipv4Addr::new(10, 231, n, 1),
            client: Ipv4Addr::new(10, 233, n, 2),
            restore_forwarding: false,
        }
    }

    /// Interface names, within the kernel's 15 characters.
    fn link(&self, role: &str) -> String {
        format!("rtn{role}{}", self.id)
    }

    fn chain(&self, hook: &str) -> String {
        format!("RT-NAT-{hook}-{}", self.id)
    }

    fn set_up(&mut self) -> Result<(), String> {
        let (bridge, pod_host, pod_end) = (self.link("b"), self.link("h"), self.link("p"));
        let (client_host, client_end) = (self.link("c"), self.link("d"));
        let client_gw = Ipv4Addr::from(u32::from(self.client) - 1);
        let (pod_ns, client_ns) = (self.pod_ns.clone(), self.client_ns.clone());
        let ip = |args: &[&str]| run("ip", args);
        let ip_in = |ns: &str, args: &[&str]| {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };

        // The node's pod network: a bridge with the node's address, the pod on a veth.
        ip(&["netns", "add", &pod_ns])?;
        ip(&["link", "add", "name", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.node), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        ip(&[
            "link", "add", &pod_host, "type", "veth", "peer", "name", &pod_end,
        ])?;
        ip(&["link", "set", &pod_host, "master", &bridge])?;
        ip(&["link", "set", &pod_host, "up"])?;
        ip(&["link", "set", &pod_end, "netns", &pod_ns])?;
        ip_in(
            &pod_ns,
            &["addr", "add", &format!("{}/24", self.pod), "dev", &pod_end],
        )?;
        ip_in(&pod_ns, &["link", "set", &pod_end, "up"])?;
        ip_in(&pod_ns, &["link", "set", "lo", "up"])?;
        ip_in(
            &pod_ns,
            &["route", "add", "default", "via", &self.node.to_string()],
        )?;

        // A remote attendee's network, routed through the node.
        ip(&["netns", "add", &client_ns])?;
        ip(&[
            "link",
            "add",
            &client_host,
            "type",
            "veth",
            "peer",
            "name",
            &client_end,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{client_gw}/24"),
            "dev",
            &client_host,
        ])?;
        ip(&["link", "set", &client_host, "up"])?;
        ip(&["link", "set", &client_end, "netns", &client_ns])?;
        ip_in(
            &client_ns,
            &[
                "addr",
                "add",
                &format!("{}/24", self.client),
                "dev",
                &client_end,
            ],
        )?;
        ip_in(&client_ns, &["link", "set", &client_end, "up"])?;
        ip_in(&client_ns, &["link", "set", "lo", "up"])?;
        ip_in(
            &client_ns,
            &["route", "add", "default", "via", &client_gw.to_string()],
        )?;
        if std::fs::read_to_string(FORWARDING)
            .map_err(|e| e.to_string())?
            .trim()
            == "0"
        {
            std::fs::write(FORWARDING, "1").map_err(|e| e.to_string())?;
            self.restore_forwarding = true;
        }

        // portmap's chains for this pod's hostPort (CNI-HOSTPORT-DNAT → CNI-DN-…,
        // CNI-HOSTPORT-SETMARK, CNI-HOSTPORT-MASQ), one of each.
        let (dnat, masq) = (self.chain("DN"), self.chain("MASQ"));
        let iptables = |args: &[&str]| {
            let mut all = vec!["-t", "nat"];
            all.extend_from_slice(args);
            run("iptables", &all)
        };
        for chain in [&dnat, &masq] {
            iptables(&["-N", chain])?;
        }
        let port = PORT.to_string();
        let to = format!("{}:{PORT}", self.pod);
        // portmap matches every local address; this bed only the node's, so that the machine's
        // other users of the port number are left alone.
        let node = format!("{}/32", self.node);
        for proto in ["tcp", "udp"] {
            for source in [format!("{}/32", self.pod), "127.0.0.1/32".into()] {
                iptables(&[
                    "-A",
                    &dnat,
                    "-s",
                    &source,
                    "-d",
                    &node,
                    "-p",
                    proto,
                    "--dport",
                    &port,
                    "-j",
                    "MARK",
                    "--set-xmark",
                    "0x2000/0x2000",
                ])?;
            }
            iptables(&[
                "-A",
                &dnat,
                "-d",
                &node,
                "-p",
                proto,
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ])?;
        }
        // The attendee's own NAT: the SFU sees neither its address nor its port.
        iptables(&[
            "-A",
            &masq,
            "-s",
            &format!("{}/32", self.client),
            "-p",
            "tcp",
            "-j",
            "MASQUERADE",
            "--to-ports",
            "30000-30999",
        ])?;
        iptables(&[
            "-A",
            &masq,
            "-m",
            "mark",
            "--mark",
            "0x2000/0x2000",
            "-j",
            "MASQUERADE",
        ])?;
        for rule in self.jumps("-I") {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            run("iptables", &args)?;
        }
        Ok(())
    }
}

impl Bed {
    /// The rules in the machine's chains: portmap's jumps to this bed's chains, and the
    /// client's way through the node whatever the machine's FORWARD policy. `op`: `-I` or `-D`.
    fn jumps(&self, op: &str) -> Vec<Vec<String>> {
        let (dnat, masq, client) = (self.chain("DN"), self.chain("MASQ"), self.link("c"));
        let local = "-m addrtype --dst-type LOCAL";
        [
            format!("-t nat {op} PREROUTING {local} -j {dnat}"),
            format!("-t nat {op} OUTPUT {local} -j {dnat}"),
            format!("-t nat {op} POSTROUTING -j {masq}"),
            format!("-t filter {op} FORWARD -i {client} -j ACCEPT"),
            format!("-t filter {op} FORWARD -o {client} -j ACCEPT"),
        ]
        .iter()
        .map(|r| r.split_whitespace().map(str::to_owned).collect())
        .collect()
    }
}

/// Removes the beds of runs that were killed before they could (their namespaces name a
/// process that is gone).
fn sweep() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let pid = line
            .split_whitespace()
            .next()
            .and_then(|name| name.strip_prefix("rt-nat-pod-"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            eprintln!("removing the bed a killed run ({pid}) left");
            let bed = Bed::of(pid);
            // Its processes (its sfu-node, a remote watcher) outlived it.
            for ns in [&bed.pod_ns, &bed.client_ns] {
                if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = run("kill", &["-KILL", pid]);
                    }
                }
            }
            drop(bed);
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for rule in self.jumps("-D") {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            let _ = run("iptables", &args);
        }
        for chain in [self.chain("DN"), self.chain("MASQ")] {
            let _ = run("iptables", &["-t", "nat", "-F", &chain]);
            let _ = run("iptables", &["-t", "nat", "-X", &chain]);
        }
        for link in [self.link("h"), self.link("c"), self.link("b")] {
            let _ = run("ip", &["link", "del", &link]);
        }
        for ns in [&self.pod_ns, &self.client_ns] {
            let _ = run("ip", &["netns", "del", ns]);
        }
        if self.restore_forwarding {
            let _ = std::fs::write(FORWARDING, "0");
        }
    }
}

/// sfu-node in the pod, as the operator starts it (`operator/src/plan/pod.rs`).
fn start_sfu(bed: &Bed) -> support::Sfu {
    let (pod, port) = (bed.pod.to_string(), PORT.to_string());
    let http = format!("{pod}:{PORT}");
    let admin = format!("{pod}:0");
    let node = bed.node.to_string();
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &bed.pod_ns, env!("CARGO_BIN_EXE_sfu-node")]);
    support::start_command(
        command,
        &[
            "--room",
            ROOM,
            "--token-key",
            KEY,
            "--kind",
            "session",
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
            "--udp-bind",
            &pod,
            "--udp-port",
            &port,
            "--advertise-addr",
            &node,
            "--ice-tcp",
            "true",
            "--drain-grace-seconds",
            "1",
        ],
    )
}

/// Joins without UDP at `base` and watches for `MEDIA_FOR` from now.
async fn watch(base: &str, name: &str) -> WatchOutcome {
    let end = Instant::now() + MEDIA_FOR;
    let token = support::token(KEY, ROOM, name, false);
    let join = Watcher::join_over(base, ROOM, &token, 1, Transport::Tcp);
    // A connection the network drops would otherwise wait for TCP's own retries.
    tokio::time::timeout(MEDIA_FOR, join)
        .await
        .unwrap_or_else(|_| panic!("{name} joins at {base} within {MEDIA_FOR:?}"))
        .unwrap_or_else(|e| panic!("{name} joins at {base}: {e}"))
        .watch_until(end)
        .await
}

/// Runs `command` with its output kept, killed if it is still running at `deadline`.
fn output_by(mut command: Command, deadline: Instant) -> String {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the remote watcher");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_without_udp_get_video_through_a_host_port() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: ICE-TCP through a hostPort needs root, `ip` and `iptables`: {why}");
        return;
    }
    let bed = Bed::create().expect("the namespaces, links and NAT rules of the bed");
    let sfu = start_sfu(&bed);
    assert_eq!(
        sfu.tcp,
        Some(sfu.http),
        "ICE-TCP listens where signalling does"
    );
    let node = SocketAddr::from((bed.node, PORT));
    let base = format!("http://{node}");

    let (mut publisher, answer) = ClientPeer::connect_over(
        node,
        &format!("/rooms/{ROOM}/whip"),
        &support::token(KEY, ROOM, "pub", true),
        ClientRole::Publish { simulcast: false },
        Transport::Tcp,
    )
    .await
    .expect("a publisher signals through the hostPort");
    assert_eq!(
        sfu_node::client::passive_tcp_candidate(&answer.text()),
        Some(node),
        "the answer's ICE-TCP candidate is the node's address and hostPort"
    );
    let end = Instant::now() + MEDIA_FOR + Duration::from_secs(4);
    let publishing = tokio::spawn(async move { publisher.publish_until(end, false).await });

    // The remote watcher: this binary again, in the client namespace.
    let remote = {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &bed.client_ns])
            .arg(std::env::current_exe().unwrap())
            .args(["remote_watcher", "--exact", "--ignored", "--nocapture"])
            .env(REMOTE_ENV, &base);
        let deadline = Instant::now() + 2 * MEDIA_FOR + Duration::from_secs(10);
        tokio::task::spawn_blocking(move || output_by(command, deadline))
    };
    let on_node = watch(&base, "on-node").await;
    let remote_out = remote.await.unwrap();
    let remote_line = remote_out
        .lines()
        .find_map(|l| l.strip_prefix("remote watcher: "))
        .unwrap_or_else(|| panic!("the remote watcher's result: {remote_out}"));
    let published = publishing.await.unwrap();

    let stats = http_request(
        SocketAddr::from((bed.pod, sfu.admin.port())),
        "GET",
        "/stats",
        &[],
        b"",
    )
    .await
    .unwrap()
    .json();
    eprintln!(
        "hostPort: published {published:?} video frames; watcher on the node: {} video \
         frames, first after {:?}; remote watcher behind its own NAT: {remote_line}; SFU \
         ICE-TCP: {}",
        on_node.video_frames, on_node.first_frame, stats["tcp"]
    );
    assert!(
        on_node.video_frames > 60,
        "video over ICE-TCP through the hostPort from the node: {} frames",
        on_node.video_frames
    );
    let remote_frames: u64 = remote_line
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("frames in {remote_line:?}"));
    assert!(
        remote_frames > 60,
        "video over ICE-TCP through the hostPort from a remote attendee behind NAT: \
         {remote_line}"
    );
}

/// The remote watcher of [`watchers_without_udp_get_video_through_a_host_port`], run by it in
/// the client namespace; prints what it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by watchers_without_udp_get_video_through_a_host_port in its client namespace"]
async fn remote_watcher() {
    let base = std::env::var(REMOTE_ENV).expect("the node's base URL, from the outer test");
    let seen = watch(&base, "remote").await;
    println!(
        "remote watcher: {} video frames, first after {:?}",
        seen.video_frames, seen.first_frame
    );
}
