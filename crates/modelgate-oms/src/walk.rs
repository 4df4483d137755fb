//! Walking a model tree and opening its files without following links we did not allow.
//!
//! The walk and the later opens both go through file descriptors relative to the model
//! root, and every open uses `openat2` with `RESOLVE_BENEATH` (and `RESOLVE_NO_SYMLINKS`
//! unless symlinks were allowed). So a file checked during the walk cannot be replaced by
//! a link to `/etc/shadow` before it is hashed: the kernel refuses the resolution itself,
//! there is no check-then-open window.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;

use crate::error::{Error, Result, TreeProblem};

/// Directory nesting deeper than this is refused: it bounds recursion, and no real
/// model comes anywhere near it (PATH_MAX stops at 4096 bytes anyway).
const DEPTH_MAX: usize = 256;

/// The git metadata the reference ignores by default.
pub const DEFAULT_IGNORES: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// One regular file of the model.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    /// The path relative to the model root with `/` separators; `.` for a single-file model.
    pub rel: String,
    /// The size seen during the walk; hashing checks the file still has it.
    pub size: u64,
}

/// A model opened for hashing: a directory (held by descriptor) or a single file.
pub(crate) struct ModelTree {
    root: Root,
    allow_symlinks: bool,
    pub files: Vec<FileEntry>,
    pub name: String,
}

enum Root {
    Dir(OwnedFd),
    File(PathBuf),
}

/// An ignore rule: a path relative to the model root, as components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IgnorePath(Vec<String>);

impl IgnorePath {
    /// Parses a relative path such as `.git`, `docs/` or `a/b.bin`.
    ///
    /// Absolute paths and `..` components are refused: an ignore rule can only ever
    /// remove something inside the model, never name something outside it.
    pub fn parse(rel: &str) -> Result<Self> {
        if rel.starts_with('/') {
            return Err(Error::Usage(format!(
                "ignore path {rel:?} must be relative to the model root"
            )));
        }
        let mut parts = Vec::new();
        for part in rel.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(Error::Usage(format!("ignore path {rel:?} must not contain '..'"))),
                p => parts.push(p.to_owned()),
            }
        }
        if parts.is_empty() {
            return Err(Error::Usage(format!("ignore path {rel:?} names the whole model")));
        }
        Ok(IgnorePath(parts))
    }

    /// Turns a path given on a command line (absolute, or relative to the model) into
    /// a rule, or `None` when it lies outside the model and so cannot match anything.
    pub fn from_user_path(model: &Path, given: &Path) -> Result<Option<Self>> {
        if given.is_absolute() {
            let root = std::fs::canonicalize(model).map_err(|e| Error::io(model_display(model), e))?;
            let parent = given.parent().unwrap_or(given);
            // The file itself may not exist (a signature not yet written), so resolve
            // its directory and re-attach the name.
            let resolved = match (std::fs::canonicalize(parent), given.file_name()) {
                (Ok(dir), Some(name)) => dir.join(name),
                _ => given.to_path_buf(),
            };
            match resolved.strip_prefix(&root) {
                Ok(rel) => match rel.to_str() {
                    Some("") => Ok(None),
                    Some(rel) => Self::parse(rel).map(Some),
                    None => Err(Error::Usage(format!(
                        "ignore path {} is not valid UTF-8",
                        given.display()
                    ))),
                },
                Err(_) => Ok(None),
            }
        } else {
            let rel = given
                .to_str()
                .ok_or_else(|| Error::Usage(format!("ignore path {} is not valid UTF-8", given.display())))?;
            Self::parse(rel).map(Some)
        }
    }

    /// The rule as written into the manifest (`a/b`).
    pub fn as_string(&self) -> String {
        self.0.join("/")
    }

    fn covers(&self, rel: &[&str]) -> bool {
        rel.len() >= self.0.len() && self.0.iter().zip(rel).all(|(a, b)| a == b)
    }
}

fn model_display(model: &Path) -> String {
    model.display().to_string()
}

fn errno_to_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

impl ModelTree {
    /// Walks `model` (a directory or a single file) and lists its regular files in
    /// path-component order, leaving out ignored paths.
    pub fn open(model: &Path, allow_symlinks: bool, ignore: &[IgnorePath]) -> Result<Self> {
        let shown = model_display(model);
        let meta = std::fs::symlink_metadata(model).map_err(|e| Error::io(&shown, e))?;
        if meta.file_type().is_symlink() && !allow_symlinks {
            return Err(Error::tree(shown, TreeProblem::SymlinkNotAllowed));
        }
        let follow = if allow_symlinks {
            OFlags::empty()
        } else {
            OFlags::NOFOLLOW
        };
        let name = model_name(model);
        let probe = rustix::fs::openat(CWD, model, OFlags::PATH | OFlags::CLOEXEC | follow, Mode::empty())
            .map_err(|e| Error::io(&shown, errno_to_io(e)))?;
        let st = rustix::fs::fstat(&probe).map_err(|e| Error::io(&shown, errno_to_io(e)))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Ok(ModelTree {
                root: Root::File(model.to_path_buf()),
                allow_symlinks,
                files: vec![FileEntry {
                    rel: ".".to_owned(),
                    size: st.st_size as u64,
                }],
                name,
            }),
            FileType::Directory => {
                let dir = rustix::fs::openat(
                    CWD,
                    model,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | follow,
                    Mode::empty(),
                )
                .map_err(|e| Error::io(&shown, errno_to_io(e)))?;
                let mut walker = Walker {
                    root: &dir,
                    allow_symlinks,
                    ignore,
                    on_path: HashSet::from([(st.st_dev, st.st_ino)]),
                    out: Vec::new(),
                };
                walker.walk(&dir, "", 0)?;
                let mut files = walker.out;
                files.sort_by(|a, b| component_cmp(&a.rel, &b.rel));
                Ok(ModelTree {
                    root: Root::Dir(dir),
                    allow_symlinks,
                    files,
                    name,
                })
            }
            _ => Err(Error::tree(shown, TreeProblem::SpecialFile)),
        }
    }

    /// Opens one listed file for reading, refusing any link the walk would have refused.
    pub fn open_file(&self, rel: &str) -> Result<File> {
        let fd = match &self.root {
            Root::File(path) => {
                let follow = if self.allow_symlinks {
                    OFlags::empty()
                } else {
                    OFlags::NOFOLLOW
                };
                rustix::fs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC | follow, Mode::empty())
            }
            Root::Dir(root) => {
                let mut resolve = ResolveFlags::BENEATH;
                let mut flags = OFlags::RDONLY | OFlags::CLOEXEC;
                if !self.allow_symlinks {
                    resolve |= ResolveFlags::NO_SYMLINKS;
                    flags |= OFlags::NOFOLLOW;
                }
                rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve)
            }
        }
        .map_err(|e| link_error(rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(rel, errno_to_io(e)))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::tree(rel, TreeProblem::SpecialFile));
        }
        // Hint the kernel to read ahead aggressively; a cold-cache hash is a read of
        // the whole file front to back. Failure only costs speed, so it is ignored.
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::Sequential);
        Ok(File::from(fd))
    }
}

fn link_error(rel: &str, e: Errno) -> Error {
    match e {
        Errno::XDEV => Error::tree(rel, TreeProblem::SymlinkEscapes),
        Errno::LOOP => Error::tree(rel, TreeProblem::SymlinkCycle),
        e => Error::io(rel, errno_to_io(e)),
    }
}

/// The model's name in the statement: the last path component, as the reference takes it.
fn model_name(model: &Path) -> String {
    let direct = model.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !direct.is_empty() && direct != ".." && direct != "." {
        return direct.to_owned();
    }
    std::fs::canonicalize(model)
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Orders paths component by component, as the reference (Python `PurePosixPath`) does:
/// `a/b` sorts before `a-b`, although `-` < `/` bytewise.
pub(crate) fn component_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

struct Walker<'a> {
    root: &'a OwnedFd,
    allow_symlinks: bool,
    ignore: &'a [IgnorePath],
    /// (device, inode) of every directory on the current path, to catch link cycles.
    on_path: HashSet<(u64, u64)>,
    out: Vec<FileEntry>,
}

impl Walker<'_> {
    fn walk(&mut self, dir: &OwnedFd, prefix: &str, depth: usize) -> Result<()> {
        if depth > DEPTH_MAX {
            return Err(Error::Usage(format!(
                "{prefix}: directories nested deeper than {DEPTH_MAX} levels"
            )));
        }
        let shown = if prefix.is_empty() { "." } else { prefix };
        let mut names = Vec::new();
        for entry in Dir::read_from(dir).map_err(|e| Error::io(shown, errno_to_io(e)))? {
            let entry = entry.map_err(|e| Error::io(shown, errno_to_io(e)))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            match std::str::from_utf8(raw) {
                Ok(name) => names.push(name.to_owned()),
                Err(_) => {
                    let lossy = String::from_utf8_lossy(raw);
                    return Err(Error::tree(join(prefix, &lossy), TreeProblem::NonUtf8Name));
                }
            }
        }
        for name in names {
            let rel = join(prefix, &name);
            let parts: Vec<&str> = rel.split('/').collect();
            if self.ignore.iter().any(|i| i.covers(&parts)) {
                continue;
            }
            let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io(&rel, errno_to_io(e)))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => self.out.push(FileEntry {
                    rel,
                    size: st.st_size as u64,
                }),
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::io(&rel, errno_to_io(e)))?;
                    self.descend(&sub, (st.st_dev, st.st_ino), &rel, depth)?;
                }
                FileType::Symlink if !self.allow_symlinks => {
                    return Err(Error::tree(rel, TreeProblem::SymlinkNotAllowed));
                }
                FileType::Symlink => self.follow_link(&rel, depth)?,
                _ => return Err(Error::tree(rel, TreeProblem::SpecialFile)),
            }
        }
        Ok(())
    }

    fn descend(&mut self, sub: &OwnedFd, id: (u64, u64), rel: &str, depth: usize) -> Result<()> {
        if !self.on_path.insert(id) {
            return Err(Error::tree(rel, TreeProblem::SymlinkCycle));
        }
        let result = self.walk(sub, rel, depth + 1);
        self.on_path.remove(&id);
        result
    }

    /// Resolves an allowed link inside the root; the kernel refuses targets outside it.
    fn follow_link(&mut self, rel: &str, depth: usize) -> Result<()> {
        let root = self.root;
        let fd = rustix::fs::openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH,
        )
        .map_err(|e| link_error(rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(rel, errno_to_io(e)))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                self.out.push(FileEntry {
                    rel: rel.to_owned(),
                    size: st.st_size as u64,
                });
                Ok(())
            }
            FileType::Directory => {
                let sub = rustix::fs::openat2(
                    root,
                    rel,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH,
                )
                .map_err(|e| link_error(rel, e))?;
                self.descend(&sub, (st.st_dev, st.st_ino), rel, depth)
            }
            _ => Err(Error::tree(rel, TreeProblem::SpecialFile)),
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Where a model's signature lives unless one is named: `MODEL/model.sig`
/// for a directory, `MODEL.sig` for a file.
pub fn default_signature(model: &Path) -> std::path::PathBuf {
    if model.is_dir() {
        model.join("model.sig")
    } else {
        let mut s = model.as_os_str().to_owned();
        s.push(".sig");
        s.into()
    }
}

/// The rules a command hashes a model with: the default git ignores, the
/// user's paths (each inside the model, else refused), and the signature
/// file when it lies inside the model (it cannot cover itself).
pub fn ignore_rules(model: &Path, user: &[std::path::PathBuf], signature: Option<&Path>) -> Result<Vec<IgnorePath>> {
    let mut rules = DEFAULT_IGNORES
        .iter()
        .map(|p| IgnorePath::parse(p))
        .collect::<Result<Vec<_>>>()?;
    let is_dir = model.is_dir();
    for p in user {
        match IgnorePath::from_user_path(model, p)? {
            Some(rule) if is_dir => rules.push(rule),
            Some(_) => {}
            None => {
                return Err(Error::Usage(format!(
                    "ignore path {} is outside the model {}",
                    p.display(),
                    model.display()
                )))
            }
        }
    }
    if let (Some(sig), true) = (signature, is_dir) {
        let absolute = if sig.is_absolute() {
            sig.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("the current directory", e))?
                .join(sig)
        };
        if let Some(rule) = IgnorePath::from_user_path(model, &absolute)? {
            rules.push(rule);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_order_differs_from_byte_order() {
        let mut v = vec!["a-b", "a/b", "a", "a/a/z", "b"];
        v.sort_by(|a, b| component_cmp(a, b));
        assert_eq!(v, ["a", "a/a/z", "a/b", "a-b", "b"]);
    }

    #[test]
    fn ignore_rules_parse_and_cover() {
        let rule = IgnorePath::parse("docs/").unwrap();
        assert!(rule.covers(&["docs", "x.md"]));
        assert!(rule.covers(&["docs"]));
        assert!(!rule.covers(&["docs2"]));
        assert!(IgnorePath::parse("../x").is_err());
        assert!(IgnorePath::parse("/abs").is_err());
        assert!(IgnorePath::parse("./").is_err());
    }
}
