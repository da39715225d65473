//! `roundtable up`: Roundtable with no cluster. The control plane, the web client and an
//! embedded sfu-node per live room in one process, reading the same manifests a cluster gets
//! (and noticing when they change). What must be kept lives in a SQLite file.

pub mod runner;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use roundtable_control_plane::{
    self as api, ApiSettings, ApiState, Clock, LocalCatalog, Mailer, RegistrationVerifier, Store,
    manifests,
};
use roundtable_crds::{Room, RoomTheme};
pub use runner::Runner;

/// How the local mode runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Manifest files or folders.
    pub paths: Vec<PathBuf>,
    /// Where the web client and API listen.
    pub listen: SocketAddr,
    /// Where embedded SFUs listen for signalling and media.
    pub media: MediaAddrs,
    /// The SQLite file.
    pub database: PathBuf,
    /// `smtp://…` to send mail; without it links are printed.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// The address people open (default: http://<listen>).
    pub public_url: Option<String>,
    /// HS256 key of registration tokens from an external registration system.
    pub registration_key: Option<Vec<u8>>,
    /// Where sessions with recording on are recorded (`<dir>/<claim>/<session>/`).
    pub recordings_dir: PathBuf,
    /// Serve HTTPS with this certificate and key (`--lan`, `--tls-cert`).
    pub tls: Option<api::serve::TlsFiles>,
    /// TURN servers for joins from networks that block UDP.
    pub turn: Option<api::turn::Turn>,
    /// The local certificate authority to tell people to trust (`--lan`).
    pub trust: Option<PathBuf>,
    /// Sign-up with an identity provider, whom to ask; dashboard rooms are kept in the
    /// database next to the manifests' rooms.
    pub accounts: api::accounts::AccountSettings,
}

/// Where the embedded SFUs listen: their signalling (WHIP, WHEP, events) and admin HTTP, and
/// their media (UDP, and TCP for ICE-TCP) sockets, which are also the ICE candidate browsers
/// send media to unless `advertise` names another address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddrs {
    pub signalling: IpAddr,
    pub udp: IpAddr,
    /// The address in the ICE candidates when it is not `udp`: the public address of a NAT in
    /// front of this machine that forwards every port to it unchanged (a cloud VM's 1:1 NAT).
    pub advertise: Option<IpAddr>,
}

impl MediaAddrs {
    /// Everything on the address the user chose; without a choice, signalling stays on
    /// loopback and media goes on the address this machine reaches the network from (`outward`),
    /// because browsers do not send WebRTC media from their network addresses to a loopback
    /// candidate (Chromium 156 leaves such a pair "in progress" forever). With no network at all,
    /// loopback for both.
    pub fn choose(chosen: Option<IpAddr>, outward: Option<IpAddr>) -> Self {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        match chosen {
            Some(ip) => MediaAddrs {
                signalling: ip,
                udp: ip,
                advertise: None,
            },
            None => MediaAddrs {
                signalling: loopback,
                udp: outward
                    .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                    .unwrap_or(loopback),
                advertise: None,
            },
        }
    }
}

/// The source address this machine's routing table picks for the network beyond it: a UDP socket
/// "connected" to a documentation address (RFC 5737) sends nothing but learns its local address.
pub fn outward_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("198.51.100.1", 9)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Runs until `shutdown` resolves.
pub async fn up(
    options: UpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let files = manifests::files(&options.paths)?;
    let loaded = manifests::load(&files)?;
    if let Some(dir) = options.database.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store = Store::open(&options.database)
        .await
        .with_context(|| format!("opening {}", options.database.display()))?;
    let join_key: Vec<u8> = rand::random::<[u8; 32]>().to_vec();
    let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
    let restored = api::dashboard::restore(&store, &*catalog)
        .await
        .context("reading the rooms hosts made on their dashboards")?;
    if restored > 0 {
        tracing::info!(
            rooms = restored,
            "dashboard rooms restored from the database"
        );
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr()?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    let tls = options
        .tls
        .as_ref()
        .map(api::serve::tls_config)
        .transpose()
        .context("the TLS certificate and key")?;
    let mailer = Mailer::new(options.smtp_url.as_deref(), &options.mail_from)?;
    let state = ApiState::protected(
        catalog.clone(),
        ApiSettings {
            store,
            join_key: join_key.clone(),
            registration: RegistrationVerifier::new(options.registration_key.clone(), None),
            mailer,
            public_url: public_url.clone(),
            clock: Clock::default(),
            recordings_dir: Some(options.recordings_dir.clone()),
        },
        api::Protection {
            turn: options.turn.clone(),
            accounts: options.accounts.clone(),
            ..api::Protection::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;

    let mut runner = Runner::new(
        catalog.clone(),
        options.paths.clone(),
        options.media,
        join_key,
        options.recordings_dir.clone(),
    );
    runner.tick().await;
    let runner = tokio::spawn(runner.run());

    println!("{}", welcome(&*catalog, &public_url, &options));
    api::serve::serve(listener, api::router(state), tls, shutdown).await?;
    runner.abort();
    Ok(())
}

/// What to open: every event and room of the manifests.
fn welcome(catalog: &dyn api::Catalog, url: &str, options: &UpOptions) -> String {
    let mut lines = vec![format!("Roundtable is running at {url}/")];
    for e in catalog.events() {
        lines.push(format!(
            "  event  {}: {url}/e/{}/{}",
            e.spec.title,
            e.metadata.namespace.as_deref().unwrap_or_default(),
            e.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let mut rooms = catalog.rooms();
    // The ones anyone can simply open first.
    rooms.sort_by_key(|r| {
        (
            room_kind(r) != OPEN,
            r.spec.host.clone(),
            r.spec.slug.clone(),
        )
    });
    for r in rooms {
        lines.push(format!(
            "  room   {} ({}): {url}/{}/{}",
            r.spec.title.as_deref().unwrap_or(&r.spec.slug),
            room_kind(&r),
            r.spec.host,
            r.spec.slug
        ));
    }
    if let Some(public) = options.media.advertise {
        lines.push(format!(
            "Media (WebRTC) on {}, announced to browsers as {public}: the NAT in front must \
             forward every UDP and TCP port of that address here.",
            options.media.udp
        ));
    } else if options.media.udp != options.media.signalling {
        lines.push(format!(
            "Media (WebRTC over UDP) on {}: browsers do not send it to loopback.",
            options.media.udp
        ));
    }
    if let Some(ca) = &options.trust {
        lines.push(format!(
            "HTTPS with a certificate from this machine's own authority, {ca}. On each device \
             that joins, trust it once:\n  \
             Chrome/Chromium on Linux: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n roundtable-local -i local-ca.pem\n  \
             Firefox: Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import\n  \
             macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain local-ca.pem\n  \
             Windows: certutil -addstore -f ROOT local-ca.pem\n  \
             Debian/Ubuntu system-wide: sudo cp local-ca.pem /usr/local/share/ca-certificates/roundtable-local.crt && sudo update-ca-certificates",
            ca = ca.display()
        ));
    }
    if let Some(turn) = &options.turn {
        lines.push(format!(
            "TURN for networks that block UDP: {}",
            turn.urls.join(", ")
        ));
    }
    if options.smtp_url.is_none() {
        lines.push("Sign-in and access links are printed here (no --smtp-url given).".into());
    }
    lines.join("\n")
}

const OPEN: &str = "open, anyone with the link joins";

/// What a person opening the room's link meets, in a few words.
fn room_kind(room: &Room) -> String {
    let spec = &room.spec;
    let mut kind = Vec::new();
    if spec.theme == RoomTheme::Webinar {
        kind.push("webinar, hosts present and the others watch".to_string());
    }
    if !spec.allowed_email_domains.is_empty() {
        kind.push(format!(
            "only for {}, joiners get an emailed link",
            spec.allowed_email_domains.join(", ")
        ));
    }
    if spec.passcode.is_some() {
        kind.push("asks for a passcode".into());
    }
    if spec.locked {
        kind.push("locked, a host lets joiners in".into());
    }
    if kind.is_empty() {
        return OPEN.into();
    }
    kind.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_each_room_s_kind_and_starts_with_an_open_one() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let loaded =
            manifests::load(&manifests::files(std::slice::from_ref(&examples)).unwrap()).unwrap();
        let catalog = LocalCatalog::new(loaded, jiff::Timestamp::now());
        let options = UpOptions {
            paths: vec![examples],
            listen: "127.0.0.1:8080".parse().unwrap(),
            media: MediaAddrs::choose(None, None),
            database: ".roundtable/local.db".into(),
            smtp_url: None,
            mail_from: "roundtable@localhost".into(),
            public_url: None,
            registration_key: None,
            recordings_dir: ".roundtable/recordings".into(),
            tls: None,
            turn: None,
            trust: None,
            accounts: Default::default(),
        };
        let banner = welcome(&catalog, "http://127.0.0.1:8080", &options);
        let rooms: Vec<&str> = banner.lines().filter(|l| l.starts_with("  room")).collect();
        assert_eq!(
            rooms,
            [
                "  room   Coffee chat (open, anyone with the link joins): http://127.0.0.1:8080/ada/coffee",
                "  room   Board meeting (asks for a passcode; locked, a host lets joiners in): http://127.0.0.1:8080/ada/board",
                "  room   What's new in Roundtable (webinar, hosts present and the others watch): http://127.0.0.1:8080/grace/product-webinar",
                "  room   Team sync (only for example.com, example.org, joiners get an emailed link): http://127.0.0.1:8080/linus/team-sync",
            ],
            "{banner}"
        );
    }

    #[test]
    fn media_goes_where_browsers_send_it() {
        let lan = IpAddr::from([192, 168, 1, 5]);
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let chosen = IpAddr::from([10, 0, 0, 7]);
        assert_eq!(
            MediaAddrs::choose(None, Some(lan)),
            MediaAddrs {
                signalling: loopback,
                udp: lan,
                advertise: None,
            }
        );
        assert_eq!(
            MediaAddrs::choose(None, None),
            MediaAddrs {
                signalling: loopback,
                udp: loopback,
                advertise: None,
            }
        );
        assert_eq!(
            MediaAddrs::choose(None, Some(IpAddr::from([0, 0, 0, 0]))).udp,
            loopback
        );
        assert_eq!(
            MediaAddrs::choose(Some(chosen), Some(lan)),
            MediaAddrs {
                signalling: chosen,
                udp: chosen,
                advertise: None,
            }
        );
    }
}
