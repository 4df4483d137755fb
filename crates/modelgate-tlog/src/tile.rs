//! C2SP tiled logs (<https://c2sp.org/tlog-tiles>): tile coordinates, the
//! canonical path encoding, tile bytes, entry bundles, and a [`HashReader`]
//! that answers node hashes (and so roots and proofs) from tiles.
//!
//! A tile at level `L`, index `N`, holds the hashes of nodes
//! `(8L, 256N + i)` for `i < W`: level-0 tiles hold leaf hashes, and each hash
//! of a level-`L` tile is the root of a full tile one level down.

use std::cell::RefCell;

use crate::error::Error;
use crate::hash::{node_hash, Hash, HASH_LEN};
use crate::tree::HashReader;

/// Tree levels per tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u16 = 256;
/// Largest entry an entry bundle can carry (big-endian u16 length prefix).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// A tile: level, index within the level, and width (1..=256; 256 is full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level (tree level `8 · level`).
    pub level: u8,
    /// Index of the tile within its level.
    pub index: u64,
    /// Number of hashes (or entries) in the tile.
    pub width: u16,
}

/// What a tile path names: a hash tile or an entry bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`.
    Hashes(TileId),
    /// `tile/entries/<N>[.p/<W>]` (level is 0).
    Entries(TileId),
}

/// Encode a tile index as zero-padded 3-digit path elements, all but the last
/// prefixed with `x`: 1234067 → `x001/x234/067`.
pub fn encode_index(index: u64) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i > 0 {
            out.push('/');
        }
        if i + 1 < groups.len() {
            out.push('x');
        }
        out.push_str(&format!("{g:03}"));
    }
    out
}

impl TileId {
    /// The width of tile `(level, index)` in a tree of `size` leaves, or
    /// `None` if that tile is empty at this size.
    pub fn width_at(level: u8, index: u64, size: u64) -> Option<u16> {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let hashes = if shift >= 64 { 0 } else { size >> shift };
        let start = index.checked_mul(u64::from(TILE_WIDTH))?;
        let w = hashes.checked_sub(start)?.min(u64::from(TILE_WIDTH));
        (w > 0).then_some(w as u16)
    }

    /// The tile at `(level, index)` as it is in a tree of `size` leaves.
    pub fn at_size(level: u8, index: u64, size: u64) -> Option<Self> {
        Self::width_at(level, index, size).map(|width| Self { level, index, width })
    }

    /// True for a full (256-wide) tile.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}{}",
            self.level,
            encode_index(self.index),
            self.partial_suffix()
        )
    }

    /// `tile/entries/<N>[.p/<W>]` for the entry bundle beside a level-0 tile.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}{}", encode_index(self.index), self.partial_suffix())
    }

    fn partial_suffix(&self) -> String {
        if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        }
    }

    /// Every non-empty tile of a tree of `size` leaves, level by level. The
    /// tiles a log must serve for a checkpoint of that size.
    pub fn all_for_size(size: u64) -> Vec<Self> {
        let mut out = Vec::new();
        for level in 0..8u8 {
            let mut index = 0u64;
            while let Some(t) = Self::at_size(level, index, size) {
                out.push(t);
                index += 1;
            }
        }
        out
    }

    /// The tiles that change when a tree grows from `old` to `new` leaves:
    /// the ones to write after integrating a batch.
    pub fn new_since(old: u64, new: u64) -> Vec<Self> {
        let mut out = Vec::new();
        for level in 0..8u8 {
            let shift = u32::from(level) * 8;
            let first = (old >> shift) / 256;
            let mut index = first;
            while let Some(t) = Self::at_size(level, index, new) {
                if Self::at_size(level, index, old) != Some(t) {
                    out.push(t);
                }
                index += 1;
            }
        }
        out
    }
}

fn parse_small(s: &str, max: u64, what: &str) -> Result<u64, Error> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0'));
    let v = if ok { s.parse::<u64>().ok() } else { None };
    v.filter(|v| *v <= max)
        .ok_or_else(|| Error::MalformedTilePath(format!("{what} {s:?}")))
}

/// Parse the path of a tile or entry bundle relative to the log prefix
/// (`tile/…`). Only the canonical encoding is accepted, so each tile has
/// exactly one name (important for caches and for storing tiles as files).
pub fn parse_path(path: &str) -> Result<TilePath, Error> {
    let rest = path
        .strip_prefix("tile/")
        .ok_or_else(|| Error::MalformedTilePath(format!("{path:?} does not start with tile/")))?;
    let (level, rest, entries) = match rest.strip_prefix("entries/") {
        Some(r) => (0u8, r, true),
        None => {
            let (l, r) = rest
                .split_once('/')
                .ok_or_else(|| Error::MalformedTilePath(format!("{path:?} has no index")))?;
            (parse_small(l, 63, "level")? as u8, r, false)
        }
    };
    let (index_part, width) = match rest.split_once(".p/") {
        Some((i, w)) => (i, parse_small(w, 255, "width")? as u16),
        None => (rest, TILE_WIDTH),
    };
    if width == 0 {
        return Err(Error::MalformedTilePath("width 0".into()));
    }
    let elems: Vec<&str> = index_part.split('/').collect();
    let mut index: u64 = 0;
    for (i, e) in elems.iter().enumerate() {
        let last = i + 1 == elems.len();
        let digits = if last { Some(*e) } else { e.strip_prefix('x') };
        let digits = digits
            .filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Error::MalformedTilePath(format!("index element {e:?}")))?;
        if i == 0 && elems.len() > 1 && digits == "000" {
            return Err(Error::MalformedTilePath("index has a leading zero element".into()));
        }
        let g: u64 = digits
            .parse()
            .map_err(|_| Error::MalformedTilePath(format!("index element {e:?}")))?;
        index = index
            .checked_mul(1000)
            .and_then(|v| v.checked_add(g))
            .ok_or_else(|| Error::MalformedTilePath("index overflows".into()))?;
    }
    let id = TileId { level, index, width };
    Ok(if entries {
        TilePath::Entries(id)
    } else {
        TilePath::Hashes(id)
    })
}

/// The bytes of `tile`: its hashes concatenated, read from stored nodes.
pub fn tile_data<R: HashReader>(tile: TileId, reader: &R) -> Result<Vec<u8>, R::Error> {
    let level = tile.level * TILE_HEIGHT;
    let mut out = Vec::with_capacity(usize::from(tile.width) * HASH_LEN);
    for i in 0..u64::from(tile.width) {
        out.extend_from_slice(&reader.node_hash(level, tile.index * u64::from(TILE_WIDTH) + i)?);
    }
    Ok(out)
}

/// Encode entries as an entry bundle: each entry prefixed by its length as a
/// big-endian u16.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| 2 + e.as_ref().len()).sum());
    for (i, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| {
            Error::MalformedTile(format!(
                "entry {i} is {} bytes; entry bundles hold at most {MAX_ENTRY_LEN}",
                e.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decode an entry bundle. The bundle must hold exactly `width` entries and
/// nothing after them.
pub fn decode_entry_bundle(data: &[u8], width: u16) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::with_capacity(usize::from(width));
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() == usize::from(width) {
            return Err(Error::MalformedTile(format!(
                "entry bundle has more than {width} entries"
            )));
        }
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(Error::MalformedTile("truncated entry length".into()));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(Error::MalformedTile(format!("entry {} is truncated", out.len())));
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    if out.len() != usize::from(width) {
        return Err(Error::MalformedTile(format!(
            "entry bundle has {} entries, want {width}",
            out.len()
        )));
    }
    Ok(out)
}

/// Where tiles come from: a directory, a database, an HTTP client.
pub trait TileSource {
    /// Why a tile could not be fetched.
    type Error;
    /// The bytes of `tile` (exactly `32 · width` of them for hash tiles).
    fn tile(&self, tile: TileId) -> Result<Vec<u8>, Self::Error>;
}

/// Why a node could not be computed from tiles.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TileReadError<E> {
    /// The node is not a complete subtree of the tree at this size.
    #[error("node (level {level}, index {index}) is not complete in a tree of size {size}")]
    NotInTree {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The tile has the wrong length.
    #[error("tile {0} has {1} bytes")]
    BadTile(String, usize),
    /// The source failed.
    #[error("fetching tile: {0}")]
    Source(E),
}

/// A [`HashReader`] over the tiles of a tree of a known size. Tiles are
/// untrusted input: anything computed from them (a root, a proof) must be
/// checked against a root from a verified checkpoint, which
/// [`crate::verify_inclusion`] and [`crate::verify_consistency`] do.
pub struct TileHashReader<'a, S: TileSource> {
    size: u64,
    source: &'a S,
    // The last few tiles read: a proof touches each tile several times.
    cache: RefCell<Vec<(TileId, Vec<u8>)>>,
}

const TILE_CACHE: usize = 8;

impl<'a, S: TileSource> TileHashReader<'a, S> {
    /// A reader for the tree of `size` leaves stored in `source`.
    pub fn new(size: u64, source: &'a S) -> Self {
        Self {
            size,
            source,
            cache: RefCell::new(Vec::new()),
        }
    }

    fn with_tile<T>(&self, tile: TileId, f: impl FnOnce(&[u8]) -> T) -> Result<T, TileReadError<S::Error>> {
        if let Some((_, data)) = self.cache.borrow().iter().find(|(t, _)| *t == tile) {
            return Ok(f(data));
        }
        let data = self.source.tile(tile).map_err(TileReadError::Source)?;
        if data.len() != usize::from(tile.width) * HASH_LEN {
            return Err(TileReadError::BadTile(tile.path(), data.len()));
        }
        let out = f(&data);
        let mut cache = self.cache.borrow_mut();
        if cache.len() == TILE_CACHE {
            cache.remove(0);
        }
        cache.push((tile, data));
        Ok(out)
    }
}

impl<S: TileSource> HashReader for TileHashReader<'_, S> {
    type Error = TileReadError<S::Error>;

    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let not_in_tree = TileReadError::NotInTree {
            level,
            index,
            size: self.size,
        };
        let tile_level = level / TILE_HEIGHT;
        let sub = u32::from(level % TILE_HEIGHT);
        // The node spans 2^sub consecutive hashes of its tile level.
        let first = index
            .checked_shl(sub)
            .filter(|f| f >> sub == index)
            .ok_or(not_in_tree)?;
        let count = 1u64 << sub;
        let tile_index = first / u64::from(TILE_WIDTH);
        let pos = (first % u64::from(TILE_WIDTH)) as usize;
        let Some(tile) = TileId::at_size(tile_level, tile_index, self.size) else {
            return Err(TileReadError::NotInTree {
                level,
                index,
                size: self.size,
            });
        };
        if pos as u64 + count > u64::from(tile.width) {
            return Err(TileReadError::NotInTree {
                level,
                index,
                size: self.size,
            });
        }
        self.with_tile(tile, |data| {
            let mut hashes: Vec<Hash> = data[pos * HASH_LEN..(pos + count as usize) * HASH_LEN]
                .chunks_exact(HASH_LEN)
                .map(|c| {
                    let mut h = [0u8; HASH_LEN];
                    h.copy_from_slice(c);
                    h
                })
                .collect();
            while hashes.len() > 1 {
                hashes = hashes.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
            }
            hashes[0]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_examples() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    }

    #[test]
    fn tiles_of_the_spec_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles,
        // one partial level 0 tile of width 112, one full level 1 tile, one
        // partial level 1 tile of width 17, and one partial level 2 tile of width 1."
        let tiles = TileId::all_for_size(70_000);
        let l0: Vec<_> = tiles.iter().filter(|t| t.level == 0).collect();
        assert_eq!(l0.len(), 274);
        assert_eq!(l0.iter().filter(|t| t.is_full()).count(), 273);
        assert_eq!(l0.last().unwrap().width, 112);
        let l1: Vec<_> = tiles.iter().filter(|t| t.level == 1).map(|t| t.width).collect();
        assert_eq!(l1, vec![256, 17]);
        let l2: Vec<_> = tiles.iter().filter(|t| t.level == 2).map(|t| t.width).collect();
        assert_eq!(l2, vec![1]);
        assert_eq!(tiles.len(), 277);
        assert_eq!(
            TileId::all_for_size(256)
                .iter()
                .map(|t| (t.level, t.width))
                .collect::<Vec<_>>(),
            vec![(0, 256), (1, 1)]
        );
    }

    #[test]
    fn paths_round_trip_and_reject_non_canonical_forms() {
        let t = TileId {
            level: 1,
            index: 1234067,
            width: 17,
        };
        assert_eq!(t.path(), "tile/1/x001/x234/067.p/17");
        assert_eq!(parse_path(&t.path()).unwrap(), TilePath::Hashes(t));
        let e = TileId {
            level: 0,
            index: 5,
            width: 256,
        };
        assert_eq!(e.entries_path(), "tile/entries/005");
        assert_eq!(parse_path("tile/entries/005").unwrap(), TilePath::Entries(e));
        for bad in [
            "tile/01/000",
            "tile/64/000",
            "tile/0/5",
            "tile/0/x000/005",
            "tile/0/001/005",
            "tile/0/x1/005",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/017",
            "tile/0/000.p/",
            "tile/0/000/",
            "tile/0/",
            "tile/entries/x005",
            "tiles/0/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/+00",
        ] {
            assert!(parse_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn entry_bundles_round_trip_and_reject_bad_shapes() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let data = encode_entry_bundle(&entries).unwrap();
        assert_eq!(&data[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(decode_entry_bundle(&data, 3).unwrap(), entries);
        assert!(decode_entry_bundle(&data, 2).is_err());
        assert!(decode_entry_bundle(&data, 4).is_err());
        assert!(decode_entry_bundle(&data[..data.len() - 1], 3).is_err());
        assert!(decode_entry_bundle(&[0], 1).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; MAX_ENTRY_LEN + 1]]).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; MAX_ENTRY_LEN]]).is_ok());
    }
}
