//! Watching the models' files: inotify wakes the loop on any change, and a file fingerprint tells a pass whether the files changed since their last verification.

use super::*;
use modelgate_node::digest_cache::FileId;

/// Files of a model: each path and its identity.
pub(super) type Fingerprint = Vec<(PathBuf, FileId)>;

/// A cheap fingerprint of a model's files, by the identity the
/// verified-digest cache trusts (device, inode, size, mtime and ctime):
/// when it changes, the files are verified again.
pub(super) fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            if let Ok(m) = std::fs::symlink_metadata(&d) {
                out.push((d.clone(), FileId::from(&m)));
            }
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), FileId::from(&m)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Watch every model's directories with inotify; each event wakes the loop
/// naming the model. New subdirectories are watched as they appear.
/// Per model: (changes seen by inotify, changes re-verified since). While the
/// two differ the model's files changed after its last verification, and the
/// gateway refuses it without waiting for the loop.
pub(super) type Changes = Arc<Mutex<BTreeMap<String, (u64, u64)>>>;

/// Wakes queued for the loop at most: a burst of file events beyond it is
/// coalesced (the change counters record every event; one pending wake is
/// enough for the loop to re-verify them all).
pub(super) const WAKE_QUEUE: usize = 64;

pub(super) fn watch(models: Vec<(String, PathBuf)>, wake: SyncSender<Wake>, changes: Changes) -> Result<(), String> {
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
    let flags = WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE
        | WatchFlags::MOVE_SELF
        | WatchFlags::DONT_FOLLOW;
    let mut by_wd: BTreeMap<i32, (String, PathBuf)> = BTreeMap::new();
    pub(super) fn add(
        fd: &rustix::fd::OwnedFd,
        flags: WatchFlags,
        by_wd: &mut BTreeMap<i32, (String, PathBuf)>,
        model: &str,
        root: &Path,
    ) {
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            if let Ok(wd) = inotify::add_watch(fd, &d, flags) {
                by_wd.insert(wd, (model.to_owned(), d.clone()));
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
    for (name, dir) in &models {
        add(&fd, flags, &mut by_wd, name, dir);
    }
    std::thread::Builder::new()
        .name("modelgate-inotify".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                let (wd, mask, name) = match reader.next() {
                    Ok(ev) => (
                        ev.wd(),
                        ev.events(),
                        ev.file_name().map(|n| n.to_string_lossy().into_owned()),
                    ),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                };
                let Some((model, dir)) = by_wd.get(&wd).cloned() else {
                    continue;
                };
                if mask.contains(ReadFlags::ISDIR) && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    if let Some(n) = name {
                        add(&fd, flags, &mut by_wd, &model, &dir.join(n));
                    }
                }
                if let Ok(mut c) = changes.lock() {
                    c.entry(model.clone()).or_default().0 += 1;
                }
                match wake.try_send(Wake::Files(model)) {
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })
        .map_err(|e| format!("starting the inotify thread: {e}"))?;
    Ok(())
}
