//! Which local program a container image stands for.

use std::ffi::OsString;
use std::path::PathBuf;

/// Maps container images to programs on this machine, since there is no container engine.
///
/// A rule names the last path segments of an image's repository: `"sfu-node"` matches
/// `sfu-node`, `ghcr.io/roundtable-dev/sfu-node:v1` and `reg:5000/x/sfu-node@sha256:…`, but
/// not `my-sfu-node`. The first matching rule wins. The mapped program is the image's
/// entrypoint: the container's `args` follow it; if the container sets `command`, its first
/// element (a path inside the image) is replaced by the program and the rest follow, so an
/// image is assumed to hold one program.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    rules: Vec<ImageRule>,
}

#[derive(Debug, Clone)]
struct ImageRule {
    repository: String,
    entrypoint: Entrypoint,
}

/// What a mapped image runs: a program, the arguments it always gets first, and extra
/// environment variables (set before the container's own, which win).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Entrypoint {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Arguments always passed before the container's own (a Dockerfile `ENTRYPOINT`'s tail).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable baked into the image (a Dockerfile `ENV`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

impl ImageMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Images whose repository ends with the segments `repository` run `program`.
    pub fn map(self, repository: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        self.map_entrypoint(repository, Entrypoint::new(program))
    }

    /// Like [`ImageMap::map`] with leading arguments and environment.
    pub fn map_entrypoint(mut self, repository: impl Into<String>, entrypoint: Entrypoint) -> Self {
        self.rules.push(ImageRule {
            repository: repository.into().trim_matches('/').to_owned(),
            entrypoint,
        });
        self
    }

    /// The entrypoint of `image`, if a rule maps it.
    pub fn resolve(&self, image: &str) -> Option<&Entrypoint> {
        let repository = repository_of(image);
        self.rules
            .iter()
            .find(|rule| {
                repository == rule.repository
                    || repository
                        .strip_suffix(rule.repository.as_str())
                        .is_some_and(|head| head.ends_with('/'))
            })
            .map(|rule| &rule.entrypoint)
    }

    /// The repositories that have a rule, for error messages.
    pub fn repositories(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.repository.as_str()).collect()
    }
}

/// `registry:5000/team/name:tag@sha256:…` → `registry:5000/team/name`.
fn repository_of(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

/// The argv of a container: the kubelet's rules for `command`/`args` over an image entrypoint.
/// `command` and `args` are already `$(VAR)`-expanded.
pub(crate) fn argv(entrypoint: &Entrypoint, command: &[String], args: &[String]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![entrypoint.program.clone().into_os_string()];
    if command.is_empty() {
        argv.extend(entrypoint.args.iter().cloned());
    } else {
        argv.extend(command[1..].iter().map(OsString::from));
    }
    argv.extend(args.iter().map(OsString::from));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_ignores_registry_port_tag_and_digest() {
        assert_eq!(repository_of("sfu-node"), "sfu-node");
        assert_eq!(repository_of("sfu-node:v1"), "sfu-node");
        assert_eq!(
            repository_of("reg:5000/x/sfu-node:v1"),
            "reg:5000/x/sfu-node"
        );
        assert_eq!(
            repository_of("reg:5000/x/sfu-node@sha256:ab"),
            "reg:5000/x/sfu-node"
        );
        assert_eq!(repository_of("reg:5000/sfu-node"), "reg:5000/sfu-node");
    }

    #[test]
    fn rules_match_whole_trailing_segments() {
        let images = ImageMap::new()
            .map("sfu-node", "/bin/sfu")
            .map("example/http-echo", "/bin/echo");
        let program = |image| images.resolve(image).map(|e| e.program.clone());
        assert_eq!(
            program("ghcr.io/roundtable-dev/sfu-node:v1"),
            Some("/bin/sfu".into())
        );
        assert_eq!(program("sfu-node"), Some("/bin/sfu".into()));
        assert_eq!(program("my-sfu-node"), None);
        assert_eq!(
            program("docker.io/example/http-echo:1"),
            Some("/bin/echo".into())
        );
        assert_eq!(program("other/http-echo"), None);
        assert_eq!(program("busybox"), None);
    }

    #[test]
    fn command_replaces_the_entrypoint_arguments_but_not_the_program() {
        let entrypoint = Entrypoint::new("/bin/prog").args(["--default"]);
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            argv(&entrypoint, &[], &strings(&["a"])),
            ["/bin/prog", "--default", "a"].map(OsString::from)
        );
        assert_eq!(
            argv(
                &entrypoint,
                &strings(&["/usr/bin/prog", "serve"]),
                &strings(&["a"])
            ),
            ["/bin/prog", "serve", "a"].map(OsString::from)
        );
    }
}
