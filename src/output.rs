//! Output files that appear whole or not at all.
//!
//! Every writer (npz archives, target artifacts) writes into an [`AtomicFile`]:
//! a temporary file in the destination's folder (so the final rename stays on
//! one filesystem and is atomic), flushed and fsynced, then renamed over the
//! destination by [`AtomicFile::commit`]. Dropping it uncommitted (an error
//! on the way, a panic) removes the temporary file, so a failed write never
//! leaves a partial file at the destination or beside it.
//!
//! This module sits below all layers: it reports plain `std::io` errors and
//! callers locate them with the destination path.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writers in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A file being written to a temporary path, renamed to its destination on commit.
pub struct AtomicFile {
    destination: PathBuf,
    temp: PathBuf,
    /// `None` once committed.
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file `.NAME.PID-N.partial` next to `destination`.
    pub fn create(destination: &Path) -> io::Result<AtomicFile> {
        let name = destination
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the output path does not name a file",
                )
            })?
            .to_string_lossy()
            .into_owned();
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp =
            destination.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(AtomicFile {
            destination: destination.to_path_buf(),
            temp,
            file: Some(BufWriter::new(file)),
        })
    }

    pub fn destination(&self) -> &Path {
        &self.destination
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.file
            .as_mut()
            .expect("an AtomicFile is not used after commit")
    }

    /// Flushes, fsyncs and renames the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        let mut file = self.file.take().expect("commit is called once");
        file.flush()?;
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.temp, &self.destination) {
            let _ = std::fs::remove_file(&self.temp);
            return Err(e);
        }
        sync_parent(&self.destination);
        Ok(())
    }
}

/// Writes `bytes` to `path` through an [`AtomicFile`].
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Makes the rename itself durable where the platform allows it; a folder that
/// cannot be opened or synced (Windows, some network filesystems) is not an error.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// A folder being written under a temporary name beside its destination
/// (`.NAME.PID-N.partial`), moved into place on commit and removed when
/// dropped uncommitted. A folder cannot be renamed over a non-empty one, so
/// commit first moves an existing destination aside and deletes it after: at
/// no moment does the destination hold a partly written folder.
pub struct AtomicDir {
    destination: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl AtomicDir {
    pub fn create(destination: &Path) -> io::Result<AtomicDir> {
        let temp = temp_sibling(destination, "partial")?;
        std::fs::create_dir(&temp)?;
        Ok(AtomicDir {
            destination: destination.to_path_buf(),
            temp,
            committed: false,
        })
    }

    /// Where the folder's contents are written until commit.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    pub fn commit(mut self) -> io::Result<()> {
        sync_tree(&self.temp)?;
        let aside = if self.destination.exists() {
            let aside = temp_sibling(&self.destination, "old")?;
            std::fs::rename(&self.destination, &aside)?;
            Some(aside)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(&self.temp, &self.destination) {
            if let Some(aside) = &aside {
                let _ = std::fs::rename(aside, &self.destination);
            }
            return Err(e);
        }
        self.committed = true;
        sync_parent(&self.destination);
        if let Some(aside) = aside {
            remove_any(&aside)?;
        }
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

fn temp_sibling(destination: &Path, suffix: &str) -> io::Result<PathBuf> {
    let name = destination.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output path does not name a file",
        )
    })?;
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    Ok(destination.with_file_name(format!(
        ".{}.{}-{n}.{suffix}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn remove_any(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// fsyncs every file and folder under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)?.sync_all()?;
        }
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn commit_replaces_the_destination_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        std::fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new contents").unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"old",
            "not visible before commit"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new contents");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn dropping_without_commit_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"partial").unwrap();
            assert_eq!(entries(dir.path()).len(), 1);
        }
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_missing_folder_fails_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AtomicFile::create(&dir.path().join("no/such/out.bin")).is_err());
    }

    #[test]
    fn a_folder_appears_whole_replacing_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.mlpackage");
        std::fs::create_dir_all(dest.join("Data")).unwrap();
        std::fs::write(dest.join("Data/old"), b"old").unwrap();
        let folder = AtomicDir::create(&dest).unwrap();
        std::fs::write(folder.path().join("new"), b"new").unwrap();
        assert!(dest.join("Data/old").exists(), "not visible before commit");
        folder.commit().unwrap();
        assert_eq!(entries(&dest), ["new"]);
        assert_eq!(entries(dir.path()), ["m.mlpackage"]);
    }

    #[test]
    fn dropping_a_folder_without_commit_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let folder = AtomicDir::create(&dir.path().join("m.mlpackage")).unwrap();
            std::fs::write(folder.path().join("partial"), b"x").unwrap();
        }
        assert!(entries(dir.path()).is_empty());
    }
}
