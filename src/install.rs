//! `drainit install DIR`: copies the running binary into a directory, so
//! that an init container of drainit's `FROM scratch` image (no shell, no
//! `cp`) can put drainit into an `emptyDir` or a named volume, and an
//! image nobody rebuilds starts through it.
//!
//! The copy is atomic: the bytes go to a temporary file in `DIR`, which is
//! flushed to disk and then renamed to `DIR/drainit`. An interrupted or
//! failed install leaves either the old file or none, never half a
//! binary; a failure removes its temporary file (a SIGKILL in the middle
//! can leave one, named `.drainit.install-PID`, never `drainit`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The name of the installed file in `DIR`.
pub const INSTALLED_NAME: &str = "drainit";

/// Where the running binary is read from: the kernel's link to the
/// executable, valid even when its path is gone or in another mount.
const RUNNING_BINARY: &str = "/proc/self/exe";

/// Mode of the installed file: everyone may run it (the app container may
/// run as another user than the init container), only its owner write it.
const INSTALLED_MODE: u32 = 0o755;

/// A failed install, naming the step and the directory.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// `DIR` is not there (a volume not mounted, a typo).
    #[error("failed to install into {dir}: no such directory (mount the volume there first)")]
    NoSuchDirectory {
        /// The directory given.
        dir: PathBuf,
    },
    /// `DIR` names something that is not a directory.
    #[error("failed to install into {dir}: not a directory")]
    NotADirectory {
        /// The directory given.
        dir: PathBuf,
    },
    /// The file system of `DIR` is mounted read-only.
    #[error("failed to install into {dir}: the directory is on a read-only file system (mount the volume read-write in the init container)")]
    ReadOnly {
        /// The directory given.
        dir: PathBuf,
    },
    /// No room left for the binary (or the user's quota is used up).
    #[error("failed to install into {dir}: no space left on the device ({size} bytes needed; give the volume more room, e.g. emptyDir.sizeLimit)")]
    Full {
        /// The directory given.
        dir: PathBuf,
        /// Size of the binary that did not fit.
        size: u64,
    },
    /// The init container's user may not write there.
    #[error("failed to install into {dir}: permission denied (run the init container as a user that may write to the volume)")]
    PermissionDenied {
        /// The directory given.
        dir: PathBuf,
    },
    /// The running binary could not be opened.
    #[error("failed to read the running binary ({RUNNING_BINARY}): {0}")]
    ReadSelf(io::Error),
    /// Any other failure of a step.
    #[error("failed to {step} in {dir}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The directory given.
        dir: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Copies the running binary to `dir/drainit` atomically, with mode 0755;
/// returns the installed path and its size in bytes.
pub fn install(dir: &Path) -> Result<(PathBuf, u64), InstallError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(InstallError::NotADirectory {
                dir: dir.to_path_buf(),
            })
        }
        Err(error) => return Err(classify("inspect the directory", dir, 0, error)),
    }
    let mut source = File::open(RUNNING_BINARY).map_err(InstallError::ReadSelf)?;
    let size = source.metadata().map_err(InstallError::ReadSelf)?.len();
    let temporary = dir.join(format!(".{INSTALLED_NAME}.install-{}", std::process::id()));
    let installed = dir.join(INSTALLED_NAME);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(INSTALLED_MODE)
        .open(&temporary)
        .map_err(|error| classify("create a temporary file", dir, size, error))?;
    if let Err((step, error)) = write_then_rename(&mut source, &mut file, &temporary, &installed) {
        // Best effort: the file may be gone already, or the device broken.
        let _ = std::fs::remove_file(&temporary);
        return Err(classify(step, dir, size, error));
    }
    // The rename is durable only once the directory itself is on disk.
    // Some file systems refuse to sync a directory; the binary is in place
    // either way, so that is not worth failing the install for.
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok((installed, size))
}

/// The steps after the temporary file exists, each naming itself on error.
fn write_then_rename(
    source: &mut File,
    file: &mut File,
    temporary: &Path,
    installed: &Path,
) -> Result<(), (&'static str, io::Error)> {
    // std::io::copy uses copy_file_range/sendfile where it can.
    io::copy(source, file).map_err(|error| ("write the binary", error))?;
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(std::fs::Permissions::from_mode(INSTALLED_MODE))
        .map_err(|error| ("set the file mode", error))?;
    file.sync_all()
        .map_err(|error| ("flush the binary to disk", error))?;
    std::fs::rename(temporary, installed)
        .map_err(|error| ("rename the temporary file to drainit", error))
}

/// Turns the errors a user can act on into their own messages.
fn classify(step: &'static str, dir: &Path, size: u64, source: io::Error) -> InstallError {
    let dir = dir.to_path_buf();
    match source.raw_os_error() {
        Some(libc::ENOENT) => InstallError::NoSuchDirectory { dir },
        Some(libc::ENOTDIR) => InstallError::NotADirectory { dir },
        Some(libc::EROFS) => InstallError::ReadOnly { dir },
        Some(libc::ENOSPC | libc::EDQUOT) => InstallError::Full { dir, size },
        Some(libc::EACCES | libc::EPERM) => InstallError::PermissionDenied { dir },
        _ => InstallError::Io { step, dir, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_a_user_can_act_on_are_named() {
        let dir = Path::new("/v");
        let cases = [
            (libc::ENOENT, "no such directory"),
            (libc::ENOTDIR, "not a directory"),
            (libc::EROFS, "read-only file system"),
            (libc::ENOSPC, "no space left"),
            (libc::EDQUOT, "no space left"),
            (libc::EACCES, "permission denied"),
            (libc::EIO, "failed to write the binary in /v"),
        ];
        for (errno, expected) in cases {
            let error = classify(
                "write the binary",
                dir,
                10,
                io::Error::from_raw_os_error(errno),
            );
            let message = error.to_string();
            assert!(message.contains(expected), "errno {errno}: {message}");
            assert!(message.contains("/v"), "errno {errno}: {message}");
        }
    }
}
