//! fs-verity: a model file sealed so that the kernel itself checks every
//! block any process reads from it.
//!
//! Sealing (`FS_IOC_ENABLE_VERITY`, SHA-256, 4096-byte blocks, no salt: the
//! parameters of `fsverity digest` by default) builds a Merkle tree over the
//! file and makes it read-only for good: it can be deleted or replaced by
//! rename, never written. From then on a read of a block that no longer
//! hashes to the tree (a block changed beneath the file system) fails with
//! EIO, in the inference server as in the node, and `FS_IOC_MEASURE_VERITY`
//! returns the file's digest in O(1). The node seals a file *before* it
//! hashes it against the signed manifest, so the bytes it verified are the
//! ones the kernel keeps checking; the measured digest is then bound to the
//! manifest digests in the node's authenticated digest cache.
//!
//! The ioctls are made through `composefs-ioctls` (the composefs project's
//! safe wrappers); this crate has no `unsafe`.

use std::fs::File;
use std::path::Path;

use composefs_ioctls::fsverity::{fs_ioc_enable_verity, fs_ioc_measure_verity, EnableVerityError, MeasureVerityError};

/// `FS_VERITY_HASH_ALG_SHA256`.
const SHA256: u8 = 1;
/// The Merkle tree's block size: the page size, which every file system
/// with fs-verity supports.
const BLOCK: u32 = 4096;

/// What sealing a file gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seal {
    /// Sealed (now or before): its fs-verity digest, hex.
    Sealed(String),
    /// The kernel or file system cannot seal it, and why.
    Unavailable(String),
}

/// The fs-verity digest of `path` (hex), `None` when it is not sealed, or
/// why fs-verity cannot be used on it.
pub fn measure(path: &Path) -> Result<Option<String>, String> {
    let f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    match fs_ioc_measure_verity::<32>(&f, SHA256) {
        Ok(d) => Ok(Some(hex::encode(d))),
        Err(MeasureVerityError::VerityMissing) => Ok(None),
        Err(MeasureVerityError::FilesystemNotSupported) => Err(unsupported(path)),
        Err(e) => Err(format!("measuring fs-verity on {}: {e}", path.display())),
    }
}

fn unsupported(path: &Path) -> String {
    format!(
        "the file system of {} does not support fs-verity (a kernel with CONFIG_FS_VERITY, and ext4 or f2fs \
         made with the verity feature, or btrfs)",
        path.display()
    )
}

/// Seal `path` if it is not sealed yet, and measure it.
pub fn seal(path: &Path) -> Seal {
    match measure(path) {
        Ok(Some(d)) => return Seal::Sealed(d),
        Ok(None) => {}
        Err(why) => return Seal::Unavailable(why),
    }
    // Read-only, and no writer may hold the file: the kernel refuses otherwise.
    let enabled = File::open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
        .and_then(|f| match fs_ioc_enable_verity(&f, SHA256, BLOCK) {
            Ok(()) | Err(EnableVerityError::AlreadyEnabled) => Ok(()),
            Err(EnableVerityError::FilesystemNotSupported) => Err(unsupported(path)),
            Err(EnableVerityError::FileOpenedForWrite) => Err(format!(
                "{} is open for writing by another process, so it cannot be sealed",
                path.display()
            )),
            Err(e) => Err(format!("sealing {} with fs-verity: {e}", path.display())),
        });
    match enabled.and_then(|()| measure(path)) {
        Ok(Some(d)) => Seal::Sealed(d),
        Ok(None) => Seal::Unavailable(format!("{} was sealed but measures as not sealed", path.display())),
        Err(why) => Seal::Unavailable(why),
    }
}
