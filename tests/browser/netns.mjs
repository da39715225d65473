// Real networks for the browser tests, built with network namespaces (root only): a "server"
// namespace where `roundtable up` and coturn run, a NAT router, and an "attendee" namespace
// behind it where Chromium runs:
//
//   server ns  10.217.<n>.2 ──veth── 10.217.<n>.1  router ns  192.168.<n>.1 ──veth── 192.168.<n>.2  attendee ns
//                                          (iptables MASQUERADE out of the server side)
//
// The router can also stand for a cloud's 1:1 NAT in front of the server (`behindPublicIp`):
// the server's public address 10.218.<n>.2 is translated to 10.217.<n>.2, and the server's own
// address is no longer reachable from the attendee.
//
// Only namespaces, links and rules this file creates are touched; everything lives in those
// namespaces and is gone when they are deleted. Every loop is bounded.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync, chmodSync, existsSync } from "node:fs";
import { join } from "node:path";

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts }).toString();

// Why this machine cannot run the network scenarios, or null when it can.
export function missingCapability() {
  if (process.getuid?.() !== 0) return "not root: network namespaces need CAP_NET_ADMIN";
  for (const tool of ["ip", "iptables", "certutil", "turnserver", "openssl"]) {
    try {
      sh("sh", ["-c", `command -v ${tool}`]);
    } catch {
      return `${tool} is not installed (scripts/install-deps installs it)`;
    }
  }
  const probe = `rt-probe-${process.pid}`;
  try {
    sh("ip", ["netns", "add", probe]);
    sh("ip", ["netns", "delete", probe]);
  } catch (e) {
    return `cannot create a network namespace: ${e.stderr || e.message}`;
  }
  return null;
}

export function buildNetwork() {
  const n = 16 + (process.pid % 200);
  const id = `rt${process.pid}`;
  const ns = { server: `${id}-srv`, router: `${id}-nat`, attendee: `${id}-att` };
  const net = {
    ns,
    serverIp: `10.217.${n}.2`,
    publicIp: `10.218.${n}.2`,
    routerOutside: `10.217.${n}.1`,
    attendeeIp: `192.168.${n}.2`,
    blocked: false,
  };
  const inNs = (name, ...args) => sh("ip", ["netns", "exec", name, ...args]);
  net.inNs = inNs;
  net.destroy = () => {
    for (const name of Object.values(ns)) {
      try {
        sh("ip", ["netns", "delete", name]);
      } catch {
        // already gone
      }
    }
  };
  try {
    for (const name of Object.values(ns)) {
      sh("ip", ["netns", "add", name]);
      inNs(name, "ip", "link", "set", "lo", "up");
    }
    // server <-> router (the "public" side)
    sh("ip", ["link", "add", `${id}s`, "netns", ns.server, "type", "veth", "peer", "name", `${id}o`, "netns", ns.router]);
    inNs(ns.server, "ip", "addr", "add", `${net.serverIp}/24`, "dev", `${id}s`);
    inNs(ns.server, "ip", "link", "set", `${id}s`, "up");
    inNs(ns.router, "ip", "addr", "add", `${net.routerOutside}/24`, "dev", `${id}o`);
    inNs(ns.router, "ip", "link", "set", `${id}o`, "up");
    // router <-> attendee (the private side)
    sh("ip", ["link", "add", `${id}i`, "netns", ns.router, "type", "veth", "peer", "name", `${id}a`, "netns", ns.attendee]);
    inNs(ns.router, "ip", "addr", "add", `192.168.${n}.1/24`, "dev", `${id}i`);
    inNs(ns.router, "ip", "link", "set", `${id}i`, "up");
    inNs(ns.attendee, "ip", "addr", "add", `${net.attendeeIp}/24`, "dev", `${id}a`);
    inNs(ns.attendee, "ip", "link", "set", `${id}a`, "up");
    inNs(ns.attendee, "ip", "route", "add", "default", "via", `192.168.${n}.1`);
    inNs(ns.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
    inNs(ns.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", `${id}o`, "-j", "MASQUERADE");
  } catch (e) {
    net.destroy();
    throw new Error(`building the test network: ${e.stderr || e.message}`);
  }
  // A firewall that blocks UDP outright (hotel or corporate network): the router drops every
  // UDP packet it would forward, both ways.
  net.blockUdp = () => {
    inNs(ns.router, "iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP");
    net.blocked = true;
  };
  net.allowUdp = () => {
    inNs(ns.router, "iptables", "-D", "FORWARD", "-p", "udp", "-j", "DROP");
    net.blocked = false;
  };
  // A firewall that lets out no UDP and TCP only to `ports`. Replies come back (conntrack).
  let tcpOnlyTo = null;
  net.onlyTcpTo = (ports) => {
    net.blockUdp();
    tcpOnlyTo = ["FORWARD", "-i", `${id}i`, "-p", "tcp", "-m", "multiport", "!", "--dports", ports.join(","), "-j", "DROP"];
    inNs(ns.router, "iptables", "-A", ...tcpOnlyTo);
  };
  // Only TCP to the HTTPS ports (443 and the test origin's 8443): what a strict corporate
  // network leaves.
  net.onlyHttps = () => net.onlyTcpTo([443, 8443]);
  net.openAll = () => {
    if (tcpOnlyTo) inNs(ns.router, "iptables", "-D", ...tcpOnlyTo);
    tcpOnlyTo = null;
    net.allowUdp();
  };
  // A 1:1 NAT for the server: the attendee reaches it only at its public address (DNAT on the
  // router, every port); packets to its own address that were not translated are dropped.
  const dnat = ["PREROUTING", "-i", `${id}i`, "-d", net.publicIp, "-j", "DNAT", "--to-destination", net.serverIp];
  const untranslated = ["FORWARD", "-i", `${id}i`, "-d", net.serverIp, "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP"];
  net.behindPublicIp = () => {
    inNs(ns.router, "iptables", "-t", "nat", "-A", ...dnat);
    inNs(ns.router, "iptables", "-I", ...untranslated);
  };
  net.withoutPublicIp = () => {
    inNs(ns.router, "iptables", "-t", "nat", "-D", ...dnat);
    inNs(ns.router, "iptables", "-D", ...untranslated);
  };
  // Packets the attendee sent to the server's own address, past the NAT, that were dropped.
  net.droppedUntranslated = () => {
    const out = inNs(ns.router, "iptables", "-L", "FORWARD", "-v", "-n", "-x");
    const line = out.split("\n").find((l) => /DROP/.test(l) && l.includes(net.serverIp) && /ctstate/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : 0;
  };
  net.droppedTcp = () => {
    const out = inNs(ns.router, "iptables", "-L", "FORWARD", "-v", "-n", "-x");
    const line = out.split("\n").find((l) => /DROP\s+(6|tcp)/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : 0;
  };
  net.droppedUdp = () => {
    const out = inNs(ns.router, "iptables", "-L", "FORWARD", "-v", "-n", "-x");
    const line = out.split("\n").find((l) => /DROP\s+(17|udp)/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : 0;
  };
  return net;
}

// A test certificate authority and a server certificate for `ips` (one or a list), made with
// openssl.
export function testCa(dir, ips) {
  mkdirSync(dir, { recursive: true });
  const p = (f) => join(dir, f);
  const run = (...args) => sh("openssl", args);
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=Roundtable test CA", "-keyout", p("ca.key"), "-out", p("ca.pem"),
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=roundtable test server",
    "-keyout", p("server.key"), "-out", p("server.csr"));
  const names = [ips].flat().map((ip) => `IP:${ip}`).join(",");
  writeFileSync(p("ext.cnf"), `subjectAltName=${names}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
    "-days", "2", "-extfile", p("ext.cnf"), "-out", p("server.pem"));
  return { ca: p("ca.pem"), cert: p("server.pem"), key: p("server.key") };
}

// A Chromium that runs inside the attendee namespace with a HOME whose NSS database trusts
// the test CA (Chromium on Linux reads $HOME/.pki/nssdb); never --ignore-certificate-errors.
export function chromiumBehindNat(dir, net, ca) {
  const home = join(dir, "home");
  const db = join(home, ".pki", "nssdb");
  mkdirSync(db, { recursive: true });
  if (!existsSync(join(db, "cert9.db"))) sh("certutil", ["-d", `sql:${db}`, "-N", "--empty-password"]);
  sh("certutil", ["-d", `sql:${db}`, "-A", "-t", "C,,", "-n", "roundtable-test-ca", "-i", ca]);
  const wrapper = join(dir, "chromium-in-netns");
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec ip netns exec ${net.ns.attendee} env HOME=${home} ${process.env.CHROMIUM_PATH || "/usr/bin/chromium"} "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  return wrapper;
}

// coturn in the server namespace: TURN over UDP and TCP on 3478 with the REST shared secret.
// coturn in the server namespace: TURN on 3478 (UDP and TCP) and, given `tls` (a certificate
// and key), TURN over TLS on 443.
export function startCoturn(dir, net, secret, tls) {
  const tlsArgs = tls ? ["--cert", tls.cert, "--pkey", tls.key, "--tls-listening-port", "443"] : ["--no-tls"];
  const child = spawn(
    "ip",
    [
      "netns", "exec", net.ns.server, "turnserver", "-n",
      "--listening-ip", net.serverIp, "--relay-ip", net.serverIp, "--listening-port", "3478",
      "--min-port", "49160", "--max-port", "49260",
      "--use-auth-secret", "--static-auth-secret", secret, "--realm", "roundtable.test",
      "--fingerprint", ...tlsArgs, "--no-dtls", "--no-cli", "--no-multicast-peers",
      "--pidfile", join(dir, "turnserver.pid"), "--log-file", "stdout", "--simple-log",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.log = [];
  child.stdout.on("data", (d) => child.log.push(d.toString()));
  child.stderr.on("data", (d) => child.log.push(d.toString()));
  return child;
}
