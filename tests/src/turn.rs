//! A TURN client of one request: an Allocate over TCP, or over TLS as a `turns:` URL asks,
//! with long-term credentials (RFC 5766, RFC 5389), what a browser does first with the
//! `iceServers` of a join answer. Enough to tell whether a TURN server accepts a credential and
//! where it relays; nothing more.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;
const UDP: u8 = 17;

/// What the TURN server answered an authenticated Allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// The server relays for us at this address.
    Relayed(SocketAddr),
    /// An error response: its code (401: the credential was refused) and reason.
    Refused(u16, String),
}

fn failure(server: SocketAddr) -> impl Fn(String) -> Error {
    move |detail| Error::Command {
        command: format!("TURN Allocate at {server}"),
        detail,
    }
}

async fn connect(server: SocketAddr) -> Result<TcpStream> {
    let fail = failure(server);
    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
        .await
        .map_err(|_| fail("connect timed out".into()))?
        .map_err(|e| fail(format!("connect: {e}")))
}

/// Allocates a UDP relay at the TURN server `server` (over TCP) as `username`/`password`:
/// the unauthenticated request that learns the realm and nonce, then the signed one.
pub async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<Allocation> {
    let mut stream = connect(server).await?;
    allocate_on(&mut stream, server, username, password).await
}

/// [`allocate`] over TLS (`turns:`), as a browser does: the server's certificate must be valid
/// for `name` and signed by the CA in `ca_pem`, else the handshake fails (an `Err`).
pub async fn allocate_tls(
    server: SocketAddr,
    name: &str,
    ca_pem: &[u8],
    username: &str,
    password: &str,
) -> Result<Allocation> {
    let fail = failure(server);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| fail(format!("reading the CA: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("the CA certificate: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(format!("TLS versions: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| fail(format!("server name {name}: {e}")))?;
    let tcp = connect(server).await?;
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
    let mut stream = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .map_err(|_| fail("the TLS handshake timed out".into()))?
        .map_err(|e| fail(format!("TLS handshake: {e}")))?;
    allocate_on(&mut stream, server, username, password).await
}

async fn allocate_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    server: SocketAddr,
    username: &str,
    password: &str,
) -> Result<Allocation> {
    let fail = failure(server);
    let transport = [UDP, 0, 0, 0];
    let first = message(ALLOCATE, 1, &[(REQUESTED_TRANSPORT, &transport)], None);
    let (kind, attrs) = exchange(stream, &first).await.map_err(&fail)?;
    if kind != ALLOCATE_ERROR {
        return Err(fail(format!(
            "an unauthenticated Allocate got {kind:#06x}, not 401"
        )));
    }
    let attr = |attrs: &[(u16, Vec<u8>)], t: u16| {
        attrs
            .iter()
            .find(|(a, _)| *a == t)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| fail(format!("no attribute {t:#06x} in the 401")))
    };
    let realm = attr(&attrs, REALM)?;
    let nonce = attr(&attrs, NONCE)?;
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(&realm);
    md5.update(b":");
    md5.update(password.as_bytes());
    let key = md5.finalize();
    let second = message(
        ALLOCATE,
        2,
        &[
            (REQUESTED_TRANSPORT, &transport),
            (USERNAME, username.as_bytes()),
            (REALM, &realm),
            (NONCE, &nonce),
        ],
        Some(&key),
    );
    let (kind, attrs) = exchange(stream, &second).await.map_err(&fail)?;
    match kind {
        ALLOCATE_OK => {
            let relayed = attr(&attrs, XOR_RELAYED_ADDRESS)?;
            xor_address(&relayed)
                .map(Allocation::Relayed)
                .ok_or_else(|| fail(format!("a relayed address of {} bytes", relayed.len())))
        }
        ALLOCATE_ERROR => {
            let error = attr(&attrs, ERROR_CODE)?;
            let code = error
                .get(2..4)
                .map(|c| u16::from(c[0] & 0x7) * 100 + u16::from(c[1]))
                .unwrap_or_default();
            let reason = String::from_utf8_lossy(error.get(4..).unwrap_or_default()).into_owned();
            Ok(Allocation::Refused(code, reason))
        }
        other => Err(fail(format!("an answer of type {other:#06x}"))),
    }
}

/// A STUN message of `kind` with `attrs`, signed with MESSAGE-INTEGRITY under `key`.
fn message(kind: u16, id: u8, attrs: &[(u16, &[u8])], key: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut msg = Vec::with_capacity(20 + body.len() + 24);
    msg.extend_from_slice(&kind.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(&MAGIC.to_be_bytes());
    msg.extend_from_slice(&[id; 12]);
    msg.extend_from_slice(&body);
    if let Some(key) = key {
        // The length covers the MESSAGE-INTEGRITY attribute; the HMAC covers what precedes it.
        let length = (body.len() + 24) as u16;
        msg[2..4].copy_from_slice(&length.to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(&msg);
        let integrity = mac.finalize().into_bytes();
        msg.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        msg.extend_from_slice(&20u16.to_be_bytes());
        msg.extend_from_slice(&integrity);
    } else {
        msg[2..4].copy_from_slice(&(body.len() as u16).to_be_bytes());
    }
    msg
}

/// Sends `request` and reads one answer: its type and attributes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Result<(u16, Vec<(u16, Vec<u8>)>), String> {
    let io = |e: std::io::Error| e.to_string();
    stream.write_all(request).await.map_err(io)?;
    let read = async {
        let mut header = [0u8; 20];
        stream.read_exact(&mut header).await?;
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((header, body))
    };
    let (header, body) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| "no answer within 5s".to_string())?
        .map_err(io)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let mut attrs = Vec::new();
    let mut rest = body.as_slice();
    while rest.len() >= 4 {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest
            .get(4..4 + len)
            .ok_or("a truncated attribute")?
            .to_vec();
        attrs.push((t, value));
        rest = rest
            .get((4 + len).next_multiple_of(4)..)
            .unwrap_or_default();
    }
    Ok((kind, attrs))
}

/// An IPv4 XOR-MAPPED-style address.
fn xor_address(value: &[u8]) -> Option<SocketAddr> {
    if value.len() < 8 || value[1] != 0x01 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes(value[4..8].try_into().ok()?) ^ MAGIC;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_address_is_unmasked_with_the_magic_cookie() {
        // 127.0.3.1:49160 as a server sends it.
        let port = 49160u16 ^ 0x2112;
        let ip = u32::from(Ipv4Addr::new(127, 0, 3, 1)) ^ MAGIC;
        let mut value = vec![0, 1];
        value.extend_from_slice(&port.to_be_bytes());
        value.extend_from_slice(&ip.to_be_bytes());
        assert_eq!(
            xor_address(&value),
            Some("127.0.3.1:49160".parse().unwrap())
        );
    }

    #[test]
    fn message_integrity_is_the_last_attribute_and_counted_in_the_length() {
        let msg = message(ALLOCATE, 2, &[(USERNAME, b"abc")], Some(b"key"));
        assert_eq!(msg.len(), 20 + 8 + 24);
        assert_eq!(u16::from_be_bytes([msg[2], msg[3]]), 8 + 24);
        assert_eq!(&msg[28..30], &MESSAGE_INTEGRITY.to_be_bytes());
    }
}
