//! The `python` option of a context: the embedded interpreter takes on the
//! environment of a Python executable the user names (typically a
//! virtualenv's `bin/python`): its `sys.prefix`, its `site-packages` and
//! their `.pth` files.
//!
//! The port links one libpython, so the executable must be of the same minor
//! version as the Python the port was built against; that is checked here,
//! before the interpreter starts, by asking the executable itself. The
//! environment is then taken on by configuring the embedded interpreter with
//! that executable (see `python::initialize_with`): CPython's `site` module
//! finds the `pyvenv.cfg` beside it and sets the prefix and the
//! site-packages as it does when that executable runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use eetf::Term;

use crate::terms::{atom, binary, integer, tuple};

/// The minor version the port was built for, as `"3.11"`.
pub const BUILT_VERSION: &str = env!("PY_REACTOR_PYTHON_VERSION");

/// Why the named executable cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("{path} is Python {}.{}, the port was built for Python {}.{}", found.0, found.1, built.0, built.1)]
    VersionMismatch { path: PathBuf, built: (u32, u32), found: (u32, u32) },
    #[error("cannot run {path} to learn its version: {reason}")]
    NotRunnable { path: PathBuf, reason: String },
}

impl Unusable {
    /// What the VM's `start_link` returns: `{error, Reason}` with Reason
    /// `{python_version_mismatch, {Major, Minor}, {Major, Minor}}` (built,
    /// found) or `{python_not_runnable, Path, Text}`.
    pub fn to_term(&self) -> Term {
        let reason = match self {
            Unusable::VersionMismatch { built, found, .. } => tuple(vec![
                atom("python_version_mismatch"),
                version_term(*built),
                version_term(*found),
            ]),
            Unusable::NotRunnable { path, reason } => tuple(vec![
                atom("python_not_runnable"),
                binary(path.to_string_lossy().as_bytes()),
                binary(reason.as_bytes()),
            ]),
        };
        tuple(vec![atom("error"), reason])
    }
}

fn version_term((major, minor): (u32, u32)) -> Term {
    tuple(vec![integer(u64::from(major)), integer(u64::from(minor))])
}

/// The built version as numbers.
pub fn built_version() -> (u32, u32) {
    parse_version(BUILT_VERSION).expect("PY_REACTOR_PYTHON_VERSION is MAJOR.MINOR")
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(['.', ' ']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Runs `python` to learn its version; `Ok` when it is the built one.
pub fn check(python: &Path) -> Result<(), Unusable> {
    let not_runnable = |reason: String| Unusable::NotRunnable { path: python.to_path_buf(), reason };
    // -I -S: no environment variables, no site: only the version is wanted,
    // and nothing the environment holds may run here.
    let output = Command::new(python)
        .args(["-I", "-S", "-c", "import sys; print(*sys.version_info[:2])"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| not_runnable(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(not_runnable(format!("{}: {}", output.status, stderr.trim())));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let found = parse_version(&text).ok_or_else(|| not_runnable(format!("unexpected output {text:?}")))?;
    let built = built_version();
    if found != built {
        return Err(Unusable::VersionMismatch { path: python.to_path_buf(), built, found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("3 11\n"), Some((3, 11)));
        assert_eq!(parse_version("3.13"), Some((3, 13)));
        assert_eq!(parse_version("three"), None);
    }

    #[test]
    fn the_built_python_passes() {
        check(Path::new(env!("PY_REACTOR_PYTHON_EXECUTABLE"))).unwrap();
    }

    #[test]
    fn a_missing_executable_is_not_runnable() {
        let err = check(Path::new("/nonexistent/bin/python")).unwrap_err();
        assert!(matches!(err, Unusable::NotRunnable { .. }), "{err:?}");
        assert_eq!(
            crate::terms::encode(&err.to_term())[..],
            crate::terms::encode(&tuple(vec![
                atom("error"),
                tuple(vec![
                    atom("python_not_runnable"),
                    binary(&b"/nonexistent/bin/python"[..]),
                    binary(
                        Command::new("/nonexistent/bin/python")
                            .output()
                            .unwrap_err()
                            .to_string()
                            .into_bytes()
                    ),
                ]),
            ]))[..]
        );
    }
}
