//! State files: a [`SavedState`] on disk, read at start and written atomically, for both
//! drivers (krpc-tokio re-exports these functions).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use krpc_core::{SavedState, StateError};

/// Why a state file could not be loaded. Either way the node should start fresh:
/// [`Builder::state_file`](crate::Builder::state_file) does, with a warning.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateFileError {
    /// The file could not be read (`NotFound` when there is none yet).
    Io(io::Error),
    /// The file is not a state this build reads: garbage, truncated, another version.
    State(StateError),
}

impl StateFileError {
    /// Whether there was simply no file (a first start): not worth a warning.
    pub fn is_missing(&self) -> bool {
        matches!(self, StateFileError::Io(error) if error.kind() == io::ErrorKind::NotFound)
    }
}

impl std::fmt::Display for StateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateFileError::Io(error) => error.fmt(f),
            StateFileError::State(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for StateFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateFileError::Io(error) => Some(error),
            StateFileError::State(error) => Some(error),
        }
    }
}

/// Reads a state file written by [`save_state_file`].
pub fn load_state_file(path: impl AsRef<Path>) -> Result<SavedState, StateFileError> {
    let bytes = fs::read(path).map_err(StateFileError::Io)?;
    SavedState::decode(&bytes).map_err(StateFileError::State)
}

/// Reads a state file for a node about to start: `None` (start fresh) when there is no
/// file, and when it cannot be read or is not a state, with a `tracing` warning.
pub(crate) fn load_or_warn(path: &Path) -> Option<SavedState> {
    match load_state_file(path) {
        Ok(state) => Some(state),
        Err(error) if error.is_missing() => {
            tracing::debug!(path = %path.display(), "no state file; starting fresh");
            None
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "state file ignored; starting fresh");
            None
        }
    }
}

/// The temporary file a save writes first: the state file's name with `.tmp` added, in
/// the same directory (a rename is atomic only within one file system).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `state` to `path` so that the file is always either the old state or the whole
/// new one: the bytes go to [`temp_path`], are flushed to disk (`fsync`), and the temporary
/// file is then renamed over `path`. If any step fails, `path` is left as it was and the
/// temporary file is removed. One writer per file: two saves to the same path at once
/// share the temporary file.
pub fn save_state_file(path: impl AsRef<Path>, state: &SavedState) -> io::Result<()> {
    let path = path.as_ref();
    let temp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(&state.encode())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    match written {
        Ok(()) => {
            // The rename is durable once the directory is synced; where a directory cannot
            // be opened (not Unix) the file is still complete, just maybe not yet renamed.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(Ok(dir)) = dir.map(File::open) {
                let _ = dir.sync_all();
            }
            Ok(())
        }
        Err(error) => {
            // Only a regular file of ours is removed (not, say, a directory in the way).
            if fs::symlink_metadata(&temp).is_ok_and(|m| m.is_file()) {
                let _ = fs::remove_file(&temp);
            }
            Err(error)
        }
    }
}
