//! Owned, 4096-aligned buffers that hold one cached expert.
//!
//! A buffer is filled front to back through [`Filling`] (which tracks how many leading bytes are
//! initialised, so no byte is ever read before it is written) and then frozen into an [`AlignedBuf`],
//! which is shared read-only behind an `Arc` as the owner of a [`cosmoe_loader::Bytes`].

#[cfg(not(unix))]
use std::alloc;
use std::alloc::Layout;
use std::fs::File;
use std::io;
use std::ptr::NonNull;

/// Alignment (and size granularity) of every expert buffer: a page, and what `O_DIRECT` needs.
pub const ALIGN: usize = 4096;

/// `n` rounded up to a multiple of `to` (a power of two), or `None` on overflow.
pub(crate) fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

/// Size of the allocation that holds `len` bytes: a whole number of pages, at least one.
pub(crate) fn alloc_size(len: usize) -> Option<usize> {
    round_up(len.max(1), ALIGN)
}

/// Heap memory aligned to [`ALIGN`], fully initialised, read-only once built; freed on drop.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Allocated bytes: a non-zero multiple of [`ALIGN`].
    len: usize,
}

// SAFETY: `AlignedBuf` owns its allocation exclusively (like a `Box<[u8]>`) and never mutates it after
// construction, so moving it to or sharing it between threads is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only gives out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    #[cfg_attr(unix, allow(dead_code))]
    fn layout(len: usize) -> Option<Layout> {
        Layout::from_size_align(len, ALIGN).ok()
    }

    /// `len` bytes of fresh pages. On Unix they come straight from `mmap` and go back with `munmap`,
    /// so an evicted expert's memory returns to the OS at once (a heap allocator may keep freed
    /// megabytes mapped, and the process's RSS would then exceed the cache budget).
    #[cfg(unix)]
    fn allocate(len: usize) -> Option<NonNull<u8>> {
        // SAFETY: an anonymous private mapping of `len` (non-zero) bytes at an address of the
        // kernel's choosing; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(p.cast::<u8>())
    }

    #[cfg(not(unix))]
    fn allocate(len: usize) -> Option<NonNull<u8>> {
        let layout = Self::layout(len)?;
        // SAFETY: `layout` has a non-zero size (`alloc_size` returns at least `ALIGN`).
        NonNull::new(unsafe { alloc::alloc(layout) })
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` bytes that this value owns; `Filling::finish` initialised
        // every one of them before this `AlignedBuf` existed, and nothing writes them afterwards.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    #[cfg(unix)]
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly the mapping `allocate` made; it is unmapped only here,
        // once, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }

    #[cfg(not(unix))]
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: `ptr` was returned by `alloc::alloc` with exactly this layout (same `len`,
            // same alignment) and is freed only here, once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A buffer being written front to back: bytes `[0, init)` are initialised, the rest are not and
/// are never exposed. Writes only ever happen at `init`.
pub(crate) struct Filling {
    buf: AlignedBuf,
    init: usize,
}

impl Filling {
    /// A buffer of [`alloc_size`]`(len)` bytes, or `None` if that much cannot be allocated.
    pub(crate) fn new(len: usize) -> Option<Filling> {
        let size = alloc_size(len)?;
        let ptr = AlignedBuf::allocate(size)?;
        Some(Filling {
            buf: AlignedBuf { ptr, len: size },
            init: 0,
        })
    }

    /// Bytes written so far (the next write goes here).
    pub(crate) fn pos(&self) -> usize {
        self.init
    }

    /// Zero-fills up to `end` (clamped to the buffer) if not yet written that far.
    pub(crate) fn zero_until(&mut self, end: usize) {
        let end = end.min(self.buf.len);
        if end > self.init {
            // SAFETY: `[init, end)` lies inside the allocation (`end <= len`) and is not shared.
            unsafe {
                std::ptr::write_bytes(self.buf.ptr.as_ptr().add(self.init), 0, end - self.init)
            };
            self.init = end;
        }
    }

    /// Copies `src` to the write position. Returns false (writing nothing) if it does not fit.
    pub(crate) fn extend_from_slice(&mut self, src: &[u8]) -> bool {
        if src.len() > self.buf.len - self.init {
            return false;
        }
        // SAFETY: the destination `[init, init + src.len())` lies inside the allocation (checked
        // above), is not shared, and cannot overlap `src`, which is initialised memory elsewhere.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.buf.ptr.as_ptr().add(self.init),
                src.len(),
            )
        };
        self.init += src.len();
        true
    }

    /// Reads at most `max` bytes of `file` at `file_offset` into the write position with one
    /// `pread` (retried on `EINTR`), advancing past what was read. `Ok(0)` means end of file.
    #[cfg(unix)]
    pub(crate) fn pread(&mut self, file: &File, file_offset: u64, max: usize) -> io::Result<usize> {
        use std::os::unix::io::AsRawFd;
        let count = max.min(self.buf.len - self.init).min(isize::MAX as usize);
        let offset = libc::off_t::try_from(file_offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        loop {
            // SAFETY: the destination `[init, init + count)` lies inside the allocation and is not
            // shared; `pread` writes at most `count` bytes there and does not read it. The fd is
            // valid for the duration of the call because `file` is borrowed.
            let n = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    self.buf.ptr.as_ptr().add(self.init).cast(),
                    count,
                    offset,
                )
            };
            if n >= 0 {
                // `n <= count`, so this stays inside the buffer.
                self.init += n as usize;
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Positioned reads into uninitialised memory need `pread(2)`; elsewhere use `IoMode::Mmap`.
    #[cfg(not(unix))]
    pub(crate) fn pread(&mut self, _file: &File, _off: u64, _max: usize) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "direct and buffered expert reads need a Unix system; use --io mmap",
        ))
    }

    /// Zero-fills whatever was not written and freezes the buffer.
    pub(crate) fn finish(mut self) -> AlignedBuf {
        self.zero_until(self.buf.len);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zero_filled() {
        let mut f = Filling::new(10).unwrap();
        assert!(f.extend_from_slice(&[1, 2, 3]));
        f.zero_until(8);
        assert!(f.extend_from_slice(&[9]));
        let b = f.finish();
        assert_eq!(b.as_ref().len(), ALIGN);
        assert_eq!(b.as_ref().as_ptr() as usize % ALIGN, 0);
        assert_eq!(&b.as_ref()[..10], &[1, 2, 3, 0, 0, 0, 0, 0, 9, 0]);
        assert!(b.as_ref()[10..].iter().all(|&x| x == 0));
    }

    #[test]
    fn overflowing_write_refused() {
        let mut f = Filling::new(1).unwrap();
        assert!(!f.extend_from_slice(&[0u8; ALIGN + 1]));
        assert_eq!(f.pos(), 0);
        assert_eq!(round_up(4097, ALIGN), Some(8192));
        assert_eq!(alloc_size(0), Some(ALIGN));
    }
}
