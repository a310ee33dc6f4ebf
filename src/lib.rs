//! The port program behind `py_reactor_context`: one module per concern, data
//! flowing one way from stdin and the auxiliary socket through the loop
//! (`reactor`) to Python and back (see `docs/internals.md`).

pub mod aio;
pub mod fdpass;
pub mod forkguard;
pub mod framing;
pub mod handoff;
pub mod interpreter;
pub mod http;
pub mod lifeline;
pub mod listening;
pub mod message;
pub mod outbound;
pub mod python;
pub mod reactor;
pub mod readiness;
pub mod recording;
pub mod replay;
pub mod stdio;
pub mod terms;
pub mod timers;
pub mod vm_request;

/// Errors that stop the port before or outside the loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Aux(#[from] fdpass::AuxError),
    #[error("{0}")]
    Init(#[from] python::InitError),
    #[error("{0}")]
    Errno(#[from] nix::errno::Errno),
    #[error("cannot find the Python package directory (python/erlang); pass --python-dir")]
    NoPackageDir,
}
