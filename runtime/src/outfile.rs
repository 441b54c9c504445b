//! Files cosmoe writes (GGUF from `convert` and `synth`, logits, routing traces): checked before any
//! work, written as `OUT.part` and renamed to `OUT` once complete, the part removed on every failure.
//!
//! - [`check_output`] refuses an output that exists and is not a regular file (a device, FIFO,
//!   socket or folder: renaming over it would replace it), whose folder is missing, or that is the
//!   same file (device and inode) as one of the command's inputs.
//! - [`PartFile`] is the file being written; dropping it unfinished removes it.
//! - [`remove_parts`] removes every part file in progress and refuses new ones: a program's
//!   SIGINT/SIGTERM handler calls it before the process dies (the `cosmoe` binary does; the library
//!   installs no signal handler, as its host owns the signals).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Error, Result};

/// The part files being written, and whether [`remove_parts`] has run.
struct Registry {
    parts: Vec<PathBuf>,
    closed: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    parts: Vec::new(),
    closed: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    // The registry stays consistent if a holder panicked: every change is one push or one removal.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes every part file in progress; from then on [`PartFile::create`] and [`PartFile::finish`]
/// fail. For a signal handler that is about to end the process.
pub fn remove_parts() {
    let mut r = registry();
    r.closed = true;
    for p in r.parts.drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

fn refuse(path: &Path, why: impl Into<String>) -> Error {
    Error::Output {
        path: path.to_owned(),
        msg: why.into(),
    }
}

/// What a path that is not a regular file is, in words.
fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Device and inode (unix), or the canonical path: what makes two paths one file.
#[derive(PartialEq, Eq)]
struct FileId(u64, u64, Option<PathBuf>);

fn file_id(path: &Path, m: &Metadata) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        FileId(m.dev(), m.ino(), None)
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        FileId(0, 0, std::fs::canonicalize(path).ok())
    }
}

/// The path with `.part` appended: where `out` is written until it is complete.
pub fn part_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Refuses `out` unless writing it through `OUT.part` can only create or replace a regular file
/// that none of `inputs` is (a folder among `inputs` stands for the files in it, as a checkpoint
/// folder's safetensors, config and tokenizer are all read). Symbolic links are followed.
pub fn check_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    check_kind(out)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            return Err(refuse(
                out,
                format!("{} is {}, not a folder", parent.display(), kind(&m)),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(
                out,
                format!("folder {} does not exist", parent.display()),
            ))
        }
        Err(e) => return Err(refuse(out, format!("folder {}: {e}", parent.display()))),
    }
    let part = part_path(out);
    match std::fs::symlink_metadata(&part) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(refuse(
                out,
                format!(
                    "{} (written first, then renamed) exists and is {}",
                    part.display(),
                    kind(&m)
                ),
            ))
        }
        _ => {}
    }
    let targets: Vec<(&Path, FileId)> = [out, part.as_path()]
        .into_iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| (p, file_id(p, &m))))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    for input in inputs {
        for file in input_files(input) {
            let Ok(m) = std::fs::metadata(&file) else {
                continue;
            };
            let id = file_id(&file, &m);
            if let Some((p, _)) = targets.iter().find(|(_, t)| *t == id) {
                return Err(refuse(
                    p,
                    format!(
                        "it is the same file as {}, an input of this command: writing it would \
                         destroy it",
                        file.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses `out` if it exists (following links) and is not a regular file.
fn check_kind(out: &Path) -> Result<()> {
    match std::fs::metadata(out) {
        Ok(m) if !m.is_file() => Err(refuse(
            out,
            format!("it is {}; cosmoe writes only regular files", kind(&m)),
        )),
        _ => Ok(()),
    }
}

/// `input`, or the entries of the folder it is.
fn input_files(input: &Path) -> Vec<PathBuf> {
    if !input.is_dir() {
        return vec![input.to_owned()];
    }
    match std::fs::read_dir(input) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// `OUT.part` while it is written: [`PartFile::finish`] renames it to `OUT`; dropped before, it is
/// removed. Registered for [`remove_parts`] meanwhile.
#[derive(Debug)]
pub struct PartFile {
    out: PathBuf,
    part: PathBuf,
    file: File,
    finished: bool,
}

impl PartFile {
    /// Creates `OUT.part` after [`check_output`] with no inputs (the caller checks those before its
    /// work). A stale regular `OUT.part` (a killed run's) is replaced.
    pub fn create(out: &Path) -> Result<Self> {
        check_output(out, &[])?;
        let part = part_path(out);
        let io = |err| io_error(&part, err);
        let mut r = registry();
        if r.closed {
            return Err(refuse(out, "interrupted"));
        }
        if std::fs::symlink_metadata(&part).is_ok() {
            std::fs::remove_file(&part).map_err(io)?;
        }
        // create_new: never follow a link or open anything that appeared since the check.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(io)?;
        r.parts.push(part.clone());
        Ok(Self {
            out: out.to_owned(),
            part,
            file,
            finished: false,
        })
    }

    /// The file to write to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The part file's path (for error messages).
    pub fn path(&self) -> &Path {
        &self.part
    }

    /// Renames the complete part file to `OUT` (replacing a regular file there).
    pub fn finish(mut self) -> Result<()> {
        let mut r = registry();
        if r.closed {
            return Err(refuse(&self.out, "interrupted"));
        }
        // The output could have become something else while we wrote.
        check_kind(&self.out)?;
        std::fs::rename(&self.part, &self.out).map_err(|err| io_error(&self.out, err))?;
        r.parts.retain(|p| *p != self.part);
        self.finished = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut r = registry();
        if let Some(i) = r.parts.iter().position(|p| *p == self.part) {
            r.parts.swap_remove(i);
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Writes `bytes` to `out` through `OUT.part`.
pub fn write(out: &Path, bytes: &[u8]) -> Result<()> {
    let part = PartFile::create(out)?;
    part.file()
        .write_all(bytes)
        .map_err(|err| io_error(part.path(), err))?;
    part.finish()
}

pub(crate) fn io_error(path: &Path, err: std::io::Error) -> Error {
    Error::Load(cosmoe_loader::LoaderError::Io {
        path: path.to_owned(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_is_renamed_when_finished_and_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("x.bin");
        write(&out, b"abc").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"abc");
        assert!(!part_path(&out).exists());

        let p = PartFile::create(&out).unwrap();
        p.file().write_all(b"unfinished").unwrap();
        assert!(part_path(&out).is_file());
        drop(p);
        assert!(!part_path(&out).exists());
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"abc",
            "the old output is kept"
        );
    }

    #[test]
    fn an_output_in_the_current_folder_has_a_parent() {
        // `x.gguf` has the parent "", which is the current folder.
        check_output(Path::new("no-such-file-here.gguf"), &[]).unwrap();
    }
}
