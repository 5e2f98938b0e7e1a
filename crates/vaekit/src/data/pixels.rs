//! Where a dataset's 8-bit pixels live: in memory, or in a memory-mapped packed file
//! ([`crate::data::packed`]) that is read page by page as batches need it.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use memmap2::UncheckedAdvice;

use crate::data::mapped::MappedFile;

/// A dataset's pixel bytes, image after image. Reads as a `[u8]` either way.
#[derive(Clone)]
pub enum Pixels {
    /// Decoded into memory.
    Owned(Vec<u8>),
    /// Bytes `range` of a read-only mapping of a packed file, shared by the splits (and, through
    /// the page cache, by every process that maps the same file).
    Mapped {
        /// The whole file's mapping.
        map: Arc<MappedFile>,
        /// The bytes of this dataset within it.
        range: Range<usize>,
    },
}

impl Pixels {
    /// Whether the bytes are read from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Pixels::Mapped { .. })
    }

    /// Keeps the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        match self {
            Pixels::Owned(v) => v.truncate(n),
            Pixels::Mapped { range, .. } => range.end = range.end.min(range.start + n),
        }
    }

    /// The bytes, writable: a mapped dataset is copied into memory first (static binarisation
    /// rewrites every pixel once).
    pub fn make_mut(&mut self) -> &mut Vec<u8> {
        if let Pixels::Mapped { map, range } = self {
            *self = Pixels::Owned(map[range.clone()].to_vec());
        }
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped { .. } => unreachable!("copied into memory above"),
        }
    }

    /// Tells the kernel this process is done with bytes `bytes` (relative to the dataset) for
    /// now: their pages leave the process's resident set but stay in the page cache, so a
    /// later read is a cheap minor fault and the resident set stays at the pages in use, not
    /// the whole file. Does nothing for bytes in memory.
    pub fn release(&self, bytes: Range<usize>) {
        let Pixels::Mapped { map, range } = self else {
            return;
        };
        let page = page_size();
        let start = (range.start + bytes.start) / page * page;
        let end = (range.start + bytes.end).min(map.len());
        if end <= start {
            return;
        }
        // SAFETY: the mapping is read-only and backed by a file, so dropping its pages loses
        // nothing: the next read of them loads the file's bytes again (from the page cache).
        // No reference into these pages is held across this call by this module's callers
        // (they copy the bytes out first); a slice that outlived it would still read the
        // file's bytes, as MADV_DONTNEED on a shared file mapping keeps the contents.
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// The kernel's page size (4 KiB where it cannot be read).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped { map, range } => &map[range.clone()],
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Pixels {
        Pixels::Owned(v)
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Pixels) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pixels::Owned(v) => write!(f, "Pixels::Owned({} bytes)", v.len()),
            Pixels::Mapped { range, .. } => {
                write!(
                    f,
                    "Pixels::Mapped({} bytes at {})",
                    range.len(),
                    range.start
                )
            }
        }
    }
}
