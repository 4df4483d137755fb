//! Hashing a model into a manifest, in parallel and in bounded memory.
//!
//! Work items (whole files, or shards) are handed out largest first from one shared
//! queue, so a 3 GiB file cut into 1 GB shards and hundreds of small files keep every
//! core busy until the end instead of leaving one core with the tail. Each worker
//! reads through one fixed buffer with positioned reads, so memory use is
//! `threads x BUFFER_BYTES` whatever the model size (no mmap: a file truncated under
//! a mapping kills the process with SIGBUS, and a verifier must never crash).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result, TreeProblem};
use crate::manifest::{HashAlgorithm, Manifest, Method, Resource, Serialization};
use crate::walk::{IgnorePath, ModelTree};

/// Bytes read per call. Large enough that syscall cost vanishes next to hashing,
/// small enough that two workers stay far below any memory budget.
const BUFFER_BYTES: usize = 1 << 20;

/// BLAKE3 input handed to its multi-threaded `update_rayon` at once: big files get
/// every core even in `files` mode, as BLAKE3 is designed to.
const BLAKE3_CHUNK_BYTES: usize = 8 << 20;

/// Everything that determines a manifest, besides the model itself.
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// Files or shards.
    pub method: Method,
    /// SHA-256 or BLAKE3.
    pub hash: HashAlgorithm,
    /// Follow links that stay inside the model root.
    pub allow_symlinks: bool,
    /// Paths left out (git metadata, the signature file, user choices).
    pub ignore: Vec<IgnorePath>,
    /// Worker threads; `None` means one per available core.
    pub threads: Option<usize>,
}

impl HashOptions {
    /// The reference's default: files, SHA-256, no symlinks, nothing ignored.
    pub fn new(method: Method, hash: HashAlgorithm) -> Self {
        HashOptions {
            method,
            hash,
            allow_symlinks: false,
            ignore: Vec::new(),
            threads: None,
        }
    }

    /// As a signer asks for it: files or shards of `shard_size` bytes,
    /// hashed with `hash`. Shards with BLAKE3 fall back to files, as in the
    /// reference (BLAKE3 is parallel within a file): the second value says so.
    pub fn requested(
        shards: bool,
        shard_size: u64,
        hash: HashAlgorithm,
    ) -> crate::Result<(Self, Option<&'static str>)> {
        let (method, note) = match (shards, hash) {
            (false, _) => (Method::Files, None),
            (true, HashAlgorithm::Blake3) => (
                Method::Files,
                Some("blake3 is parallel within a file; using --method files, as the reference does"),
            ),
            (true, _) if shard_size == 0 => return Err(crate::Error::Usage("--shard-size must be at least 1".into())),
            (true, _) => (Method::Shards { shard_size }, None),
        };
        Ok((Self::new(method, hash), note))
    }
}

struct Item {
    file: usize,
    start: u64,
    end: u64,
}

/// Hashes `model` into a manifest. `progress`, when given, gets the total once the
/// tree is listed and is advanced by the bytes hashed, so a caller can draw a
/// progress bar from another thread; it also paces the run (see
/// [`HashProgress::paced`]) and can cancel it.
pub fn hash_model(model: &Path, opts: &HashOptions, progress: Option<&HashProgress>) -> Result<Manifest> {
    hash_model_filtered(model, opts, progress, |_| true)
}

/// Like [`hash_model`], but hashes only the files `keep` accepts (by relative path).
pub fn hash_model_filtered(
    model: &Path,
    opts: &HashOptions,
    progress: Option<&HashProgress>,
    keep: impl Fn(&str) -> bool,
) -> Result<Manifest> {
    if let Method::Shards { shard_size: 0 } = opts.method {
        return Err(Error::Usage("shard size must be at least 1 byte".to_owned()));
    }
    let mut tree = ModelTree::open(model, opts.allow_symlinks, &opts.ignore)?;
    tree.files.retain(|f| keep(&f.rel));
    if let Some(p) = progress {
        p.total.store(
            tree.files.iter().map(|f| f.size).sum(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let items = plan(&tree, opts.method)?;
    let digests = run(&tree, &items, opts, progress)?;
    let serialization = Serialization {
        method: opts.method,
        hash: opts.hash,
        allow_symlinks: opts.allow_symlinks,
        ignore_paths: {
            let mut v: Vec<String> = opts.ignore.iter().map(IgnorePath::as_string).collect();
            v.sort();
            v.dedup();
            v
        },
    };
    let algorithm = serialization.resource_algorithm();
    let resources = items
        .iter()
        .zip(digests)
        .map(|(item, digest)| Resource {
            name: match opts.method {
                Method::Files => tree.files[item.file].rel.clone(),
                Method::Shards { .. } => format!("{}:{}:{}", tree.files[item.file].rel, item.start, item.end),
            },
            algorithm: algorithm.clone(),
            digest,
        })
        .collect();
    Manifest::new(tree.name.clone(), serialization, resources)
}

fn plan(tree: &ModelTree, method: Method) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (file, entry) in tree.files.iter().enumerate() {
        match method {
            Method::Files => items.push(Item {
                file,
                start: 0,
                end: entry.size,
            }),
            Method::Shards { shard_size } => {
                // The reference parses `path:start:end` by splitting on ':', so a
                // colon in a path would make a manifest it cannot read back.
                if entry.rel.contains(':') {
                    return Err(Error::Usage(format!(
                        "{}: a file name containing ':' cannot be named in a shards manifest; use --method files",
                        entry.rel
                    )));
                }
                // As in the reference, an empty file has no shard at all.
                let mut start = 0;
                while start < entry.size {
                    let end = start.saturating_add(shard_size).min(entry.size);
                    items.push(Item { file, start, end });
                    start = end;
                }
            }
        }
    }
    Ok(items)
}

fn run(tree: &ModelTree, items: &[Item], opts: &HashOptions, progress: Option<&HashProgress>) -> Result<Vec<Vec<u8>>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].end - items[i].start));
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Vec<u8>>>> = Mutex::new(vec![None; items.len()]);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; BUFFER_BYTES];
                while !failed.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    match hash_item(tree, &items[i], opts.hash, &mut buf, progress) {
                        Ok(d) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(d);
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    results
        .into_inner()
        .map_err(|_| Error::Usage("internal: a hashing worker panicked".to_owned()))?
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.ok_or_else(|| Error::tree(&tree.files[items[i].file].rel, TreeProblem::ChangedWhileHashing)))
        .collect()
}

fn hash_item(
    tree: &ModelTree,
    item: &Item,
    alg: HashAlgorithm,
    buf: &mut [u8],
    progress: Option<&HashProgress>,
) -> Result<Vec<u8>> {
    let entry = &tree.files[item.file];
    let file = tree.open_file(&entry.rel)?;
    let digest = match alg {
        HashAlgorithm::Sha256 => {
            let mut h = Sha256::new();
            read_range(&file, &entry.rel, item.start, item.end, buf, progress, |b| h.update(b))?;
            h.finalize().to_vec()
        }
        HashAlgorithm::Blake2b => {
            let mut h = blake2::Blake2b512::new();
            read_range(&file, &entry.rel, item.start, item.end, buf, progress, |b| h.update(b))?;
            h.finalize().to_vec()
        }
        HashAlgorithm::Blake3 => {
            let mut h = blake3::Hasher::new();
            if item.end - item.start >= BLAKE3_CHUNK_BYTES as u64 {
                let mut big = vec![0u8; BLAKE3_CHUNK_BYTES];
                read_range(&file, &entry.rel, item.start, item.end, &mut big, progress, |b| {
                    h.update_rayon(b);
                })?;
            } else {
                read_range(&file, &entry.rel, item.start, item.end, buf, progress, |b| {
                    h.update(b);
                })?;
            }
            h.finalize().as_bytes().to_vec()
        }
    };
    // The walk saw a size; a file that grew or shrank since is not the file we listed.
    let now = file.metadata().map_err(|e| Error::io(&entry.rel, e))?.len();
    if now != entry.size {
        return Err(Error::tree(&entry.rel, TreeProblem::ChangedWhileHashing));
    }
    Ok(digest)
}

/// Feeds bytes `[start, end)` of `file` to `sink`, failing if the file ends early.
fn read_range(
    file: &File,
    rel: &str,
    start: u64,
    end: u64,
    buf: &mut [u8],
    progress: Option<&HashProgress>,
    mut sink: impl FnMut(&[u8]),
) -> Result<()> {
    let mut pos = start;
    while pos < end {
        let want = usize::try_from(end - pos).map_or(buf.len(), |r| r.min(buf.len()));
        let n = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return Err(Error::tree(rel, TreeProblem::ChangedWhileHashing)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(rel, e)),
        };
        sink(&buf[..n]);
        pos += n as u64;
        if let Some(p) = progress {
            p.advance(n as u64)?;
        }
    }
    Ok(())
}

/// Progress of one hashing run, for a caller that draws it from another
/// thread. The total is known only once the run has listed the tree (the
/// tree is walked once, by the run itself); until then it is 0.
///
/// It also paces the run, for a re-verification in the background that
/// must not take the disk from the inference server reading the same
/// model, and lets another thread cancel it (a node that stops does not
/// wait for hundreds of gigabytes).
#[derive(Debug, Default)]
pub struct HashProgress {
    /// Bytes the run will read (0 until the tree is listed).
    pub total: AtomicU64,
    /// Bytes read so far.
    pub done: AtomicU64,
    /// Bytes per second at most, over the whole run and all workers; 0: no limit.
    limit: u64,
    /// When the first read finished (the pace is measured from there).
    started: OnceLock<Instant>,
    cancelled: AtomicBool,
}

/// The longest sleep between two checks of the cancel flag.
const PACE_STEP: Duration = Duration::from_millis(100);

impl HashProgress {
    /// A run read at `bytes_per_second` at most (0: as fast as it can).
    pub fn paced(bytes_per_second: u64) -> Self {
        HashProgress {
            limit: bytes_per_second,
            ..Self::default()
        }
    }

    /// Stop the run: its next read fails with [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Time since the run's first read (zero before it).
    pub fn elapsed(&self) -> Duration {
        self.started.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Count `n` bytes read, then sleep for as long as the run is ahead of
    /// its pace: the bytes read so far at the limit rate take this long.
    fn advance(&self, n: u64) -> Result<()> {
        let start = *self.started.get_or_init(Instant::now);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        loop {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if self.limit == 0 {
                return Ok(());
            }
            let due = Duration::from_secs_f64(done as f64 / self.limit as f64);
            let Some(ahead) = due.checked_sub(start.elapsed()) else {
                return Ok(());
            };
            if ahead.is_zero() {
                return Ok(());
            }
            std::thread::sleep(ahead.min(PACE_STEP));
        }
    }
}
