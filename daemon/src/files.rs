//! The daemon's own files (the database, the holder file, the start lock, the log): opened
//! without following a symbolic link, and readable by their owner only (mode 0600, whatever the
//! umask). A symlink planted where one of them belongs makes the open fail instead of creating
//! or truncating its target (issue 11).

use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

/// The mode of every file the daemon creates.
pub const OWNER_ONLY: u32 = 0o600;

/// `O_NOFOLLOW`: a symlink as the last component fails with `ELOOP`. `O_NONBLOCK`: a FIFO
/// planted at the path fails (or returns) at once instead of blocking the open forever.
fn flags() -> i32 {
    // The flag bits fit in an i32 (they are C `int` flags).
    (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path} is a symbolic link; refusing to follow it. Remove it: orders creates this file itself")]
    Symlink { path: PathBuf },
    #[error("{path} is {kind}, not a regular file; refusing to use it. Remove it or choose another path")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{path} belongs to uid {owner}, not to you (uid {uid}); refusing to use it. Remove it if it is \
         not needed: orders creates this file itself"
    )]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error(
        "{path} has {links} hard links: another name shares it (a `cp -al` copy, or a link to someone \
         else's file); refusing to use it. Copy it without links (`cp --preserve=all`), or remove it"
    )]
    Linked { path: PathBuf, links: u64 },
    // The error is in the message, not a `source`: `{:#}` would print it twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

/// A private file, opened.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// The mode it had when it was open to others (made by an older version, or by hand), before
    /// it was tightened to 0600.
    pub tightened_from: Option<u32>,
}

/// How a private file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and write, created if absent, never truncated.
    ReadWrite,
    /// Appended to, created if absent (a log).
    Append,
}

/// Opens (creating it if absent) a regular file that only its owner may read: never through a
/// symlink, never a FIFO or a device; an existing file open to others is set to 0600.
pub fn open_private(path: &Path, access: Access) -> Result<Opened, FileError> {
    let mut options = OpenOptions::new();
    match access {
        Access::ReadWrite => options.read(true).write(true),
        Access::Append => options.append(true),
    };
    let file = options
        .create(true)
        .mode(OWNER_ONLY)
        .custom_flags(flags())
        .open(path)
        .map_err(|error| open_error(path, error))?;
    let tightened_from = restrict(&file, path)?;
    Ok(Opened { file, tightened_from })
}

/// Replaces a small private file with `text` whole: a new file beside it (`.new`, as
/// [`open_private`] opens one) written and fsynced, renamed into place, the directory fsynced.
/// Returns the new file, open for reading and writing.
pub fn replace_private(path: &Path, text: &str) -> Result<File, FileError> {
    use std::io::Write as _;
    let io = |error| FileError::Io { path: path.to_owned(), error };
    let fresh = with_suffix(path, ".new");
    let mut file = open_private(&fresh, Access::ReadWrite)?.file;
    file.set_len(0).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&fresh, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
    }
    Ok(file)
}

/// Tightens an existing file to 0600 (the database's `-wal` and `-shm` left by an older
/// version); nothing happens when it does not exist.
pub fn tighten_if_present(path: &Path) -> Result<Option<u32>, FileError> {
    match OpenOptions::new().read(true).custom_flags(flags()).open(path) {
        Ok(file) => restrict(&file, path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(open_error(path, error)),
    }
}

/// Why an open failed, in words: a symlink, or something that is no regular file (a FIFO
/// without a reader fails with `ENXIO`, a directory with `EISDIR`), rather than the bare errno.
fn open_error(path: &Path, error: io::Error) -> FileError {
    if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return FileError::Symlink { path: path.to_path_buf() };
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => FileError::Symlink { path: path.to_path_buf() },
        Ok(meta) if !meta.is_file() => FileError::NotRegular { path: path.to_path_buf(), kind: kind(&meta) },
        _ => FileError::Io { path: path.to_path_buf(), error },
    }
}

/// Reads a small private file (at most 4 KiB): `None` if it is absent; an error naming it if it
/// is a symlink, no regular file, or cannot be read.
pub fn read_private(path: &Path) -> Result<Option<String>, FileError> {
    Ok(read_private_with_meta(path)?.map(|(text, _)| text))
}

/// The same, with the metadata of the file that was read (its owner and mode, which a caller
/// judges on the very file it read, not on whatever the path names a moment later).
pub fn read_private_with_meta(path: &Path) -> Result<Option<(String, Metadata)>, FileError> {
    let file = match OpenOptions::new().read(true).custom_flags(flags()).open(path) {
        Ok(file) => file,
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(FileError::Symlink { path: path.to_path_buf() });
        }
        Err(error) => return Err(FileError::Io { path: path.to_path_buf(), error }),
    };
    let io = |error| FileError::Io { path: path.to_path_buf(), error };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: path.to_path_buf(), kind: kind(&meta) });
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).map_err(io)?;
    Ok(Some((text, meta)))
}

/// Reads a small private file (at most 4 KiB); `None` if it is absent, a symlink or no regular file.
pub fn read_small(path: &Path) -> Option<String> {
    let file = OpenOptions::new().read(true).custom_flags(flags()).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Requires a regular file of this user's with no other name, and sets it to 0600 when it is
/// anything else; returns the old mode when it was open to group or others. Someone else's file
/// (planted, or hard-linked in) is refused before anything is changed in it (issue 11).
fn restrict(file: &File, path: &Path) -> Result<Option<u32>, FileError> {
    let io = |error| FileError::Io { path: path.to_path_buf(), error };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: path.to_path_buf(), kind: kind(&meta) });
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(FileError::NotOwned { path: path.to_path_buf(), owner: meta.uid(), uid });
    }
    if meta.nlink() > 1 {
        return Err(FileError::Linked { path: path.to_path_buf(), links: meta.nlink() });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode == OWNER_ONLY {
        return Ok(None);
    }
    // Also when the umask took bits off the new file's 0600: the owner must keep read and write.
    file.set_permissions(Permissions::from_mode(OWNER_ONLY)).map_err(io)?;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// `path` with `suffix` added to its last component: `orders.db` + `-wal`, `store.id` + `.new`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A new, empty, owner-only file that was not there before, never made through a symlink: a
/// backup's temporary file, a restore's staged copy.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(OWNER_ONLY)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// What a file is, for messages: "a regular file", "a FIFO", ...
pub fn kind(meta: &Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_0600_and_an_open_one_is_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let opened = open_private(&path, Access::ReadWrite).expect("create");
        assert_eq!(opened.tightened_from, None);
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(open_private(&path, Access::Append).expect("open").tightened_from, Some(0o644));
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(tighten_if_present(&path).expect("tighten"), Some(0o666));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(tighten_if_present(&dir.path().join("absent")).expect("absent"), None);
    }

    #[test]
    fn a_symlink_is_never_followed_and_its_target_never_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let error = open_private(&link, Access::ReadWrite).expect_err("a symlink");
        assert!(matches!(error, FileError::Symlink { .. }), "{error}");
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(!target.exists());
        std::fs::write(&target, "precious").expect("target");
        assert!(open_private(&link, Access::Append).is_err());
        assert!(matches!(tighten_if_present(&link), Err(FileError::Symlink { .. })));
        assert_eq!(read_small(&link), None);
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");
    }

    #[test]
    fn a_file_with_a_second_name_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "").expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        std::fs::hard_link(&path, dir.path().join("other")).expect("link");
        let error = open_private(&path, Access::ReadWrite).expect_err("two links");
        assert!(error.to_string().contains("has 2 hard links"), "{error}");
        assert!(matches!(tighten_if_present(&path), Err(FileError::Linked { links: 2, .. })));
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0)
            .expect("mkfifo");
        for access in [Access::ReadWrite, Access::Append] {
            let error = open_private(&fifo, access).expect_err("a fifo");
            assert!(error.to_string().contains("is a FIFO"), "{error}");
        }
        let error = open_private(dir.path(), Access::Append).expect_err("a directory");
        assert_eq!(error.to_string().matches("directory").count(), 1, "{error}");
        assert_eq!(read_small(&fifo), None);
    }
}
