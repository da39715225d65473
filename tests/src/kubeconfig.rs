//! Kubeconfig files for kubectl and for the controller-manager and scheduler, and the matching
//! in-memory `kube::Config`.

use std::path::Path;

use kube::config::AuthInfo;

use crate::error::{Error, IoContext, Result};

/// A bearer-token user, as the API server's `--token-auth-file` knows it.
#[derive(Debug, Clone)]
pub(crate) struct TokenUser {
    pub(crate) token: String,
    pub(crate) name: &'static str,
    pub(crate) groups: &'static [&'static str],
}

impl TokenUser {
    pub(crate) fn new(name: &'static str, groups: &'static [&'static str]) -> Self {
        Self {
            token: random_token(),
            name,
            groups,
        }
    }

    /// One line of a static token file: `token,user,uid,"group1,group2"`.
    pub(crate) fn token_file_line(&self) -> String {
        format!(
            "{},{},{},\"{}\"\n",
            self.token,
            self.name,
            self.name,
            self.groups.join(",")
        )
    }
}

/// Writes a kubeconfig whose only context talks to `server` as the bearer token `token`.
pub(crate) fn write(
    path: &Path,
    server: &str,
    ca_file: &Path,
    user: &str,
    token: &str,
) -> Result<()> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "roundtable-e2e",
            "cluster": { "server": server, "certificate-authority": ca_file },
        }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{
            "name": "roundtable-e2e",
            "context": { "cluster": "roundtable-e2e", "user": user },
        }],
        "current-context": "roundtable-e2e",
    });
    let yaml = serde_yaml::to_string(&doc).map_err(|e| Error::Serialize(e.to_string()))?;
    std::fs::write(path, yaml).context(|| format!("writing {}", path.display()))
}

/// Writes a kubeconfig whose only context talks to `server` with a client certificate.
pub(crate) fn write_client_cert(
    path: &Path,
    server: &str,
    ca_file: &Path,
    user: &str,
    (cert, key): (&Path, &Path),
) -> Result<()> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "roundtable-e2e",
            "cluster": { "server": server, "certificate-authority": ca_file },
        }],
        "users": [{ "name": user, "user": { "client-certificate": cert, "client-key": key } }],
        "contexts": [{
            "name": "roundtable-e2e",
            "context": { "cluster": "roundtable-e2e", "user": user },
        }],
        "current-context": "roundtable-e2e",
    });
    let yaml = serde_yaml::to_string(&doc).map_err(|e| Error::Serialize(e.to_string()))?;
    std::fs::write(path, yaml).context(|| format!("writing {}", path.display()))
}

/// Authentication with a bearer token. `AuthInfo::token` is a `secrecy::SecretString`; going
/// through serde avoids depending on `secrecy` directly.
pub(crate) fn bearer(token: &str) -> Result<AuthInfo> {
    serde_json::from_value(serde_json::json!({ "token": token }))
        .map_err(|e| Error::Serialize(e.to_string()))
}

/// A 32-hex-digit token. It only guards servers on loopback that live as long as one test
/// binary, so std's randomly seeded hasher is random enough.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    format!("{:016x}{:016x}", state.hash_one(1u8), state.hash_one(2u8))
}
