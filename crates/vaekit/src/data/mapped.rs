//! A read-only mapping of a packed file that, if another program truncates the file while it
//! is mapped, stops the process with one line naming the file instead of a bare SIGBUS.
//!
//! Reading a page of a mapping past the end of its (since truncated) file raises SIGBUS. A
//! handler, installed with the first mapping, looks the faulting address up in a fixed table of
//! the live mappings (written with atomics only, so the handler reads it safely) and, when it
//! is one of them, writes `vaekit: FILE: ...` to stderr and exits with status 1 (checkpoints
//! are written whole or not at all, so the run stays at its last one). A fault anywhere else
//! is left to the default action, as if no handler were there.

use std::ops::Deref;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Mappings watched at once (a process maps one or two packed files; more are still mapped,
/// only their faults are not named).
const SLOTS: usize = 16;

/// One watched mapping: its address range and the line to print (a leaked `Box<[u8]>`).
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    message: AtomicPtr<u8>,
    message_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    message: AtomicPtr::new(std::ptr::null_mut()),
    message_len: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static INSTALL: Once = Once::new();

/// A packed file mapped read-only, watched for truncation while it lives.
pub struct MappedFile {
    map: Mmap,
    slot: Option<usize>,
}

impl MappedFile {
    /// Maps `file` (opened from `path`) read-only.
    pub fn map(file: &std::fs::File, path: &Path) -> Result<MappedFile> {
        // SAFETY: the mapping is read-only. If another program truncates the file while it is
        // mapped, reading the lost pages raises SIGBUS, which the handler below turns into one
        // line naming the file; if it rewrites the file in place, reads see the new bytes
        // (vaekit itself never writes a packed file in place: packing writes a new file and
        // renames it).
        let map = unsafe { Mmap::map(file) }.map_err(Error::io(path))?;
        INSTALL.call_once(install_handler);
        let slot = watch(&map, path);
        Ok(MappedFile { map, slot })
    }
}

impl Deref for MappedFile {
    type Target = Mmap;
    fn deref(&self) -> &Mmap {
        &self.map
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let s = &TABLE[i];
            s.len.store(0, Ordering::SeqCst);
            let p = s.message.swap(std::ptr::null_mut(), Ordering::SeqCst);
            let n = s.message_len.load(Ordering::SeqCst);
            s.start.store(0, Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` of a `Box<[u8]>` of `n` bytes in
                // `watch`, and the swap above took it out of the table, so it is freed once.
                // The handler only runs on this process's own faults in the mapping, which is
                // still alive here.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) });
            }
        }
    }
}

/// Enters `map` in a free slot of the table; `None` when all are taken.
fn watch(map: &Mmap, path: &Path) -> Option<usize> {
    let start = map.as_ptr() as usize;
    for (i, s) in TABLE.iter().enumerate() {
        if s.start
            .compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let line = format!(
                "vaekit: {}: the packed dataset was truncated or replaced in place while in use (by another program); stopped. The run keeps its last checkpoint; restore the file (or pack it again) and resume\n",
                path.display()
            )
            .into_bytes()
            .into_boxed_slice();
            let n = line.len();
            s.message_len.store(n, Ordering::SeqCst);
            s.message
                .store(Box::into_raw(line).cast::<u8>(), Ordering::SeqCst);
            s.len.store(map.len(), Ordering::SeqCst);
            return Some(i);
        }
    }
    None
}

/// Installs the SIGBUS handler (once).
fn install_handler() {
    // SAFETY: a plain sigaction call with a zeroed, then filled, `sigaction` struct; the
    // handler below only uses async-signal-safe calls (write, _exit, sigaction).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &TABLE {
        let (start, len) = (s.start.load(Ordering::SeqCst), s.len.load(Ordering::SeqCst));
        if len > 0 && addr >= start && addr < start + len {
            let p = s.message.load(Ordering::SeqCst);
            let n = s.message_len.load(Ordering::SeqCst);
            // SAFETY: write(2) and _exit(2) are async-signal-safe; `p` points to `n` bytes
            // that live until the slot is emptied.
            unsafe {
                if !p.is_null() {
                    libc::write(2, p.cast(), n);
                }
                libc::_exit(1);
            }
        }
    }
    // Not one of ours: fall back to the default action; returning re-runs the faulting
    // access, which then ends the process as SIGBUS does.
    // SAFETY: resetting a signal's action is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}
