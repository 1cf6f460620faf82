//! [`Error`]: why a call to the driver failed.

use std::{fmt, io};

use krpc_core::{CommandError, ConfigError, QueryError};

/// Why a call to the driver failed.
///
/// The first two variants are those of the tokio driver. Shutting down is reported one way
/// only, as `Error::Query(QueryError::ShutDown)` (see [`is_shut_down`](Self::is_shut_down)),
/// whether the call was still waiting when the driver stopped or came after.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command ran and failed: the engine's verdict, such as [`QueryError::Timeout`],
    /// [`QueryError::Remote`] or [`QueryError::SendFailed`]; or [`QueryError::ShutDown`] when
    /// the driver stopped ([`Krpc::shutdown`](crate::Krpc::shutdown), the last handle dropped,
    /// a fatal socket error). Refusals with a `QueryError` equivalent (no nodes, invalid
    /// address, closed) are reported here too.
    Query(QueryError),
    /// The engine refused the command before sending anything: queue full, too many lookups,
    /// target of the wrong length.
    Refused(CommandError),
    /// A blocking call was made on the driver's own thread (from a query handler), where it
    /// could never finish. Answer with the [`Responder`](crate::Responder) instead.
    OnDriverThread,
    /// The engine refused the configuration.
    Config(ConfigError),
    /// A bootstrap host could not be resolved, or resolved to no address the socket can reach.
    Resolve {
        /// The host as given (`host:port`).
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The socket could not be bound or set up, the OS gave no randomness, or the driver's
    /// thread could not be started.
    Io(io::Error),
}

/// What every call returns once the driver has stopped.
pub(crate) const SHUT_DOWN: Error = Error::Query(QueryError::ShutDown);

impl Error {
    /// True when the call failed because the driver has stopped.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Error::Query(QueryError::ShutDown))
    }
}

impl From<QueryError> for Error {
    fn from(e: QueryError) -> Error {
        Error::Query(e)
    }
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Error {
        match e {
            CommandError::Closed => SHUT_DOWN,
            CommandError::NoNodes => Error::Query(QueryError::NoNodes),
            CommandError::InvalidAddress => Error::Query(QueryError::InvalidAddress),
            e => Error::Refused(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Query(e) => e.fmt(f),
            Error::Refused(e) => write!(f, "refused: {e}"),
            Error::OnDriverThread => f.write_str("blocking call on the driver's own thread"),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Query(e) => Some(e),
            Error::Refused(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Resolve { source, .. } | Error::Io(source) => Some(source),
            Error::OnDriverThread => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
