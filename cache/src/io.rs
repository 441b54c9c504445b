//! The files experts are read from: open handles (plain and `O_DIRECT`), maps, and the reads that
//! fill an expert's buffer.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cosmoe_loader::Bytes;
use parking_lot::Mutex;

use crate::buffer::{Filling, ALIGN};
use crate::layout::Slot;
use crate::{CacheError, IoMode};

/// One open file of the layout.
pub(crate) struct DataFile {
    pub path: PathBuf,
    /// Plain handle: buffered reads, `fstat`, and the rest of a direct read that came up short.
    pub file: File,
    /// `O_DIRECT` handle, where asked for and accepted.
    direct: Option<File>,
    /// Cleared when the file system refuses an `O_DIRECT` read (`EINVAL`).
    direct_ok: AtomicBool,
    /// Length when opened.
    pub len: u64,
    /// The whole file mapped (mmap mode, non-empty files only).
    pub map: Option<Bytes>,
}

impl DataFile {
    /// Opens `path` for `io`; a notice is pushed if `O_DIRECT` was asked for but is not available.
    pub(crate) fn open(
        path: &Path,
        io: IoMode,
        notices: &Mutex<Vec<String>>,
    ) -> Result<DataFile, CacheError> {
        let open_err = |e: io::Error| CacheError::Open {
            path: path.to_owned(),
            source: Arc::new(e),
        };
        let file = File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let direct = match io {
            IoMode::Direct => match open_direct(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    notices.lock().push(format!(
                        "{}: cannot open with O_DIRECT ({e}); reading it buffered, through the page \
                         cache, so the OS may hold more than the cache budget",
                        path.display()
                    ));
                    None
                }
            },
            _ => None,
        };
        let map = match io {
            IoMode::Mmap if len > 0 => {
                // SAFETY: the map is read-only. The remaining hazard of any file map is that another
                // process truncates or rewrites the file while it is mapped: reads of pages past the
                // new end raise SIGBUS. The cache narrows this by checking the file's length with
                // `fstat` before serving a part (see `ExpertCache`'s docs), but cannot close it;
                // Direct and Buffered modes never map files for this reason.
                let m = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
                Some(Bytes::new(Arc::new(m)))
            }
            _ => None,
        };
        Ok(DataFile {
            path: path.to_owned(),
            file,
            direct_ok: AtomicBool::new(direct.is_some()),
            direct,
            len,
            map,
        })
    }

    /// Whether reads of this file are planned with `O_DIRECT` (decided at open).
    pub(crate) fn plans_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Current length, by `fstat`.
    pub(crate) fn current_len(&self) -> Result<u64, CacheError> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| CacheError::io(&self.path, 0, e))?
            .len())
    }

    /// Reads the part at `offset..offset + len` of this file into `slot` of `buf` (which has been
    /// written up to at most `slot.region`). Returns the bytes transferred from the file.
    pub(crate) fn read_part(
        &self,
        buf: &mut Filling,
        slot: &Slot,
        offset: u64,
        len: usize,
        notices: &Mutex<Vec<String>>,
        fake_einval: bool,
    ) -> Result<u64, CacheError> {
        let data_end = slot.data + len;
        let mut moved = 0u64;
        // With O_DIRECT: the aligned superset, from `offset` rounded down to a block, in whole
        // blocks; a short read at the end of the file is fine once the part itself is in.
        let lead = (slot.data - slot.region) as u64;
        let region_file_offset = offset - lead;
        buf.zero_until(slot.region);
        if slot.direct {
            if let Some(direct) = self.direct.as_ref() {
                while self.direct_ok.load(Ordering::Relaxed) && buf.pos() < data_end {
                    let done = buf.pos() - slot.region;
                    if !done.is_multiple_of(ALIGN) {
                        break; // an odd-sized short read: finish with plain reads
                    }
                    let r = match fake_einval {
                        true => Err(einval()),
                        false => buf.pread(
                            direct,
                            region_file_offset + done as u64,
                            slot.region_len - done,
                        ),
                    };
                    match r {
                        Ok(0) => break,
                        Ok(n) => moved += n as u64,
                        Err(e) if is_einval(&e) => {
                            if self.direct_ok.swap(false, Ordering::Relaxed) {
                                notices.lock().push(format!(
                                    "{}: the file system refused an O_DIRECT read ({e}); reading it \
                                     buffered, through the page cache, so the OS may hold more \
                                     than the cache budget",
                                    self.path.display()
                                ));
                            }
                            break;
                        }
                        Err(e) => {
                            return Err(CacheError::io(
                                &self.path,
                                region_file_offset + done as u64,
                                e,
                            ))
                        }
                    }
                }
            }
        }
        // Plain reads for the rest (all of it when not direct): continue from wherever the buffer
        // is, which maps to the same place in the file.
        let (base_buf, base_file) = if buf.pos() <= slot.data {
            buf.zero_until(slot.data);
            (slot.data, offset)
        } else {
            (slot.region, region_file_offset)
        };
        while buf.pos() < data_end {
            let done = (buf.pos() - base_buf) as u64;
            match buf.pread(&self.file, base_file + done, data_end - buf.pos()) {
                Ok(0) => {
                    return Err(CacheError::ShortRead {
                        path: self.path.clone(),
                        offset,
                        wanted: len,
                        got: buf.pos().saturating_sub(slot.data),
                    })
                }
                Ok(n) => moved += n as u64,
                Err(e) => return Err(CacheError::io(&self.path, base_file + done, e)),
            }
        }
        Ok(moved)
    }
}

#[cfg(unix)]
fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

#[cfg(unix)]
fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

#[cfg(not(unix))]
fn einval() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "invalid argument")
}

#[cfg(not(unix))]
fn is_einval(_e: &io::Error) -> bool {
    false
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "O_DIRECT is Linux-only",
    ))
}
