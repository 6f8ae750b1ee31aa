//! The few system calls std does not offer on `wasm32-wasip1`, with native stand-ins so the
//! probe also builds and runs on the host.

use std::io;
use std::path::Path;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod imp {
    use std::ffi::{CString, c_char, c_int};
    use std::io;
    use std::path::Path;

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "random_get"]
        fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
    }

    // wasi-libc resolves both paths against the preopened directories, exactly as it does for
    // std's own file calls, so the symlink goes through the same path as a real program's.
    unsafe extern "C" {
        fn symlink(target: *const c_char, linkpath: *const c_char) -> c_int;
    }

    pub fn random_fill(buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `buf`, which stays borrowed for the call.
        let errno = unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) };
        if errno == 0 {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "random_get failed with wasi errno {errno}"
            )))
        }
    }

    pub fn symlink_to(target: &Path, link: &Path) -> io::Result<()> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "path contains a nul byte")
            })
        };
        let (target, link) = (c(target)?, c(link)?);
        // SAFETY: both are valid nul-terminated strings that outlive the call.
        if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
mod imp {
    use std::io;
    use std::path::Path;

    /// Native builds exist only to test the probe's logic, so no real randomness is needed.
    pub fn random_fill(buf: &mut [u8]) -> io::Result<()> {
        buf.fill(0);
        Ok(())
    }

    #[cfg(unix)]
    pub fn symlink_to(target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    #[cfg(not(unix))]
    pub fn symlink_to(_target: &Path, _link: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "symlinks are not supported here",
        ))
    }
}

/// Fills `buf` from the WASI random source (zeros in native builds).
pub fn random_fill(buf: &mut [u8]) -> io::Result<()> {
    imp::random_fill(buf)
}

/// Creates the symbolic link `link` pointing at `target`.
pub fn symlink_to(target: &Path, link: &Path) -> io::Result<()> {
    imp::symlink_to(target, link)
}
