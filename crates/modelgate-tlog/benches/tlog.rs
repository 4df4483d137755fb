//! Throughput and latency of the log core. Run with
//! `cargo bench -p modelgate-tlog --bench tlog`; figures go into BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use modelgate_tlog::*;
use sha2::{Digest, Sha256};

const TREE: u64 = 1_000_000;

fn entries(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..len).map(|j| (i * 31 + j) as u8).collect()).collect()
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("hashing");
    // Baseline: plain SHA-256 of the same bytes, so the ratio shows the cost
    // of the RFC 6962 framing rather than the machine's SHA-256 speed.
    for len in [64usize, 256] {
        let data = entries(1024, len);
        g.throughput(Throughput::Elements(data.len() as u64));
        g.bench_function(format!("sha256_baseline/{len}B"), |b| {
            b.iter(|| {
                for d in &data {
                    black_box(<[u8; 32]>::from(Sha256::digest(d)));
                }
            })
        });
        g.bench_function(format!("leaf_hash/{len}B"), |b| {
            b.iter(|| {
                for d in &data {
                    black_box(leaf_hash(d));
                }
            })
        });
    }
    let leaves: Vec<Hash> = entries(4096, 64).iter().map(|e| leaf_hash(e)).collect();
    g.throughput(Throughput::Elements(leaves.len() as u64));
    g.bench_function("node_hash", |b| {
        b.iter(|| {
            for w in leaves.windows(2) {
                black_box(node_hash(&w[0], &w[1]));
            }
        })
    });
    g.bench_function("compact_append", |b| {
        b.iter_batched(
            CompactTree::new,
            |mut t| {
                for l in &leaves {
                    t.append(*l, |_, _, _| {});
                }
                black_box(t.root())
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("memory_tree_append", |b| {
        b.iter_batched(
            MemoryTree::new,
            |mut t| {
                for l in &leaves {
                    t.append(*l);
                }
                black_box(t.root())
            },
            BatchSize::SmallInput,
        )
    });
    let data = entries(4096, 256);
    g.bench_function("hash_and_integrate/256B", |b| {
        b.iter_batched(
            CompactTree::new,
            |mut t| {
                for d in &data {
                    t.append(leaf_hash(d), |_, _, _| {});
                }
                black_box(t.root())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let mut tree = MemoryTree::new();
    for i in 0..TREE {
        tree.append(leaf_hash(&i.to_be_bytes()));
    }
    let root = tree.root();
    let mut g = c.benchmark_group("proofs_1e6");
    let indexes: Vec<u64> = (0..64u64).map(|i| (i * 15_485_863) % TREE).collect();
    g.throughput(Throughput::Elements(indexes.len() as u64));
    g.bench_function("inclusion_generate", |b| {
        b.iter(|| {
            for &i in &indexes {
                black_box(inclusion_proof(i, TREE, &tree).unwrap());
            }
        })
    });
    let cases: Vec<(u64, Vec<Hash>, Hash)> = indexes
        .iter()
        .map(|&i| (i, inclusion_proof(i, TREE, &tree).unwrap(), leaf_hash(&i.to_be_bytes())))
        .collect();
    g.bench_function("inclusion_verify", |b| {
        b.iter(|| {
            for (i, p, leaf) in &cases {
                verify_inclusion(leaf, *i, TREE, p, &root).unwrap();
            }
        })
    });
    let old: Vec<(u64, Hash, Vec<Hash>)> = indexes
        .iter()
        .map(|&i| {
            let m = i.max(1);
            (
                m,
                root_at(m, &tree).unwrap(),
                consistency_proof(m, TREE, &tree).unwrap(),
            )
        })
        .collect();
    g.bench_function("consistency_generate", |b| {
        b.iter(|| {
            for (m, _, _) in &old {
                black_box(consistency_proof(*m, TREE, &tree).unwrap());
            }
        })
    });
    g.bench_function("consistency_verify", |b| {
        b.iter(|| {
            for (m, r, p) in &old {
                verify_consistency(*m, TREE, p, r, &root).unwrap();
            }
        })
    });
    g.finish();
}

fn notes(c: &mut Criterion) {
    let log = SignerKey::from_seed("bench.example/log", KeyType::Ed25519, &[1; 32]).unwrap();
    let witness = SignerKey::from_seed("bench.example/w", KeyType::CosignatureV1, &[2; 32]).unwrap();
    let cp = Checkpoint {
        origin: "bench.example/log".into(),
        size: TREE,
        root: [9; 32],
        extensions: vec![],
    };
    let mut note = cp.sign(&log).unwrap();
    note.add_signature(witness.cosign(note.text(), 1_700_000_000).unwrap())
        .unwrap();
    let bytes = note.to_bytes();
    let policy = CheckpointPolicy::new(log.verifier(), vec![witness.verifier()], 1).unwrap();
    let mut g = c.benchmark_group("notes");
    g.bench_function("checkpoint_sign", |b| b.iter(|| black_box(cp.sign(&log).unwrap())));
    g.bench_function("cosign", |b| {
        b.iter(|| black_box(witness.cosign(note.text(), 1_700_000_000).unwrap()))
    });
    g.bench_function("checkpoint_verify_log_plus_1_witness", |b| {
        b.iter(|| black_box(policy.verify(&bytes).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, hashing, proofs, notes);
criterion_main!(benches);
