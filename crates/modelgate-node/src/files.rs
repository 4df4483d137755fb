//! Reading bounded files and replacing files atomically, as the node's
//! state (trusted checkpoint, keys) needs: a crash leaves the old file or the
//! new one, never a torn one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::NodeError;

/// Read `path` if it is at most `max` bytes (`what` names it in errors).
pub fn read_limited(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, NodeError> {
    let meta = std::fs::metadata(path).map_err(|e| NodeError::io(path, e))?;
    if meta.len() > max {
        return Err(NodeError::Config(format!(
            "{what} {} is {} bytes, more than the {max} allowed",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| NodeError::io(path, e))
}

/// A verifier key given on a command line: the `name+id+key` string
/// itself, or the path of a file holding one.
pub fn read_vkey(arg: &str, what: &str) -> Result<modelgate_tlog::VerifierKey, NodeError> {
    use modelgate_tlog::VerifierKey;
    let direct = VerifierKey::parse(arg);
    let path = Path::new(arg);
    if direct.is_ok() || !path.is_file() {
        return direct
            .map_err(|e| NodeError::Config(format!("{what} {arg:?} is neither a verifier key nor a file: {e}")));
    }
    let text = String::from_utf8(read_limited(path, 64 * 1024, what)?)
        .map_err(|_| NodeError::Config(format!("{what} file {arg} is not text")))?;
    VerifierKey::parse(text.trim()).map_err(|e| NodeError::Config(format!("{what} in {arg}: {e}")))
}

/// Write `data` to a new file at `path` with `mode`, and fsync it;
/// `overwrite` false refuses an existing file.
pub fn write_new(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), NodeError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| NodeError::io(path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| NodeError::io(path, e))
}

/// Replace `path` with `data`: written to a temporary file beside it,
/// fsynced, then renamed over it.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NodeError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write_new(&tmp, data, 0o644, true)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| NodeError::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
