//! A tiny llama-architecture model in GGUF (v3), generated for the live
//! demonstration's llama.cpp inference server: about 330 KiB, one layer,
//! deterministic weights, loaded and run by llama.cpp like any GGUF model.
//!
//! The writer is this module's own: the demo needs a few dozen lines of the
//! format (little-endian header, typed metadata, tensor infos, 32-byte
//! aligned F32 data), and no maintained Rust crate writes GGUF without
//! `unsafe` or a whole inference engine behind it. What it writes is checked
//! by llama.cpp itself: the demo's test loads it in the real server.
//!
//! The weights are not trained. The output layer is built so that greedy
//! decoding always picks one of a few dozen word tokens (each word's row is
//! ±c·u for a random u, so whichever way the hidden state points some word
//! scores above every byte token, whose rows are zero): the answers are
//! strings of words, not bytes that are not UTF-8.

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const GGUF_VERSION: u32 = 3;
const ALIGNMENT: usize = 32;

// Metadata value types (GGUF specification).
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
// Tensor type F32 (ggml_type).
const GGML_F32: u32 = 0;

const N_EMBD: usize = 64;
const N_HEAD: usize = 4;
const N_FF: usize = 128;
const N_LAYER: usize = 1;
const N_CTX: u32 = 512;

/// The words the model speaks (SentencePiece style: `▁` marks a space).
const WORDS: &[&str] = &[
    "score",
    "approved",
    "applicant",
    "credit",
    "risk",
    "low",
    "high",
    "medium",
    "stable",
    "income",
    "history",
    "limit",
    "review",
    "model",
    "governed",
    "signed",
    "verified",
    "decision",
    "record",
    "audit",
    "policy",
    "within",
    "bounds",
    "accept",
    "hold",
    "ok",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
];

/// A metadata value.
enum Value {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

/// Builds the file in memory.
struct Writer {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, Vec<f32>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(ALIGNMENT) {
        out.push(0);
    }
}

impl Writer {
    fn meta(&mut self, k: &str, v: Value) {
        self.meta.push((k.to_owned(), v));
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data: Vec<f32>) {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        self.tensors
            .push((name.to_owned(), dims.iter().map(|&d| d as u64).collect(), data));
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(GGUF_MAGIC);
        out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut out, k);
            match v {
                Value::U32(x) => {
                    out.extend_from_slice(&T_UINT32.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Value::F32(x) => {
                    out.extend_from_slice(&T_FLOAT32.to_le_bytes());
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Value::Str(s) => {
                    out.extend_from_slice(&T_STRING.to_le_bytes());
                    put_str(&mut out, s);
                }
                Value::Strs(xs) => {
                    out.extend_from_slice(&T_ARRAY.to_le_bytes());
                    out.extend_from_slice(&T_STRING.to_le_bytes());
                    out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                    for s in xs {
                        put_str(&mut out, s);
                    }
                }
                Value::F32s(xs) => {
                    out.extend_from_slice(&T_ARRAY.to_le_bytes());
                    out.extend_from_slice(&T_FLOAT32.to_le_bytes());
                    out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                    xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                }
                Value::I32s(xs) => {
                    out.extend_from_slice(&T_ARRAY.to_le_bytes());
                    out.extend_from_slice(&T_INT32.to_le_bytes());
                    out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                    xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                }
            }
        }
        let mut offset = 0usize;
        for (name, dims, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&GGML_F32.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += (data.len() * 4).next_multiple_of(ALIGNMENT);
        }
        pad(&mut out);
        for (_, _, data) in &self.tensors {
            data.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            pad(&mut out);
        }
        out
    }
}

/// splitmix64: deterministic weights from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Uniform in [-1, 1).
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn fill(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// The model file's bytes.
pub fn tiny_llama() -> Vec<u8> {
    // Vocabulary: three control tokens, the 256 byte tokens (byte fallback).
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    // Each word twice: with a leading space and without (token strings are
    // unique), for the + and − rows of the output layer.
    let first_word = tokens.len();
    for w in WORDS {
        tokens.push(format!("▁{w}"));
        types.push(1);
    }
    for w in WORDS {
        tokens.push((*w).to_owned());
        types.push(1);
    }
    let n_vocab = tokens.len();
    let scores: Vec<f32> = (0..n_vocab).map(|i| -(i as f32)).collect();

    let mut w = Writer {
        meta: Vec::new(),
        tensors: Vec::new(),
    };
    w.meta("general.architecture", Value::Str("llama".into()));
    w.meta("general.name", Value::Str("modelgate-demo-tiny".into()));
    w.meta("general.alignment", Value::U32(ALIGNMENT as u32));
    w.meta("llama.context_length", Value::U32(N_CTX));
    w.meta("llama.embedding_length", Value::U32(N_EMBD as u32));
    w.meta("llama.block_count", Value::U32(N_LAYER as u32));
    w.meta("llama.feed_forward_length", Value::U32(N_FF as u32));
    w.meta("llama.attention.head_count", Value::U32(N_HEAD as u32));
    w.meta("llama.attention.head_count_kv", Value::U32(N_HEAD as u32));
    w.meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.meta("llama.rope.dimension_count", Value::U32((N_EMBD / N_HEAD) as u32));
    w.meta("llama.vocab_size", Value::U32(n_vocab as u32));
    w.meta("tokenizer.ggml.model", Value::Str("llama".into()));
    w.meta("tokenizer.ggml.tokens", Value::Strs(tokens));
    w.meta("tokenizer.ggml.scores", Value::F32s(scores));
    w.meta("tokenizer.ggml.token_type", Value::I32s(types));
    w.meta("tokenizer.ggml.unknown_token_id", Value::U32(0));
    w.meta("tokenizer.ggml.bos_token_id", Value::U32(1));
    w.meta("tokenizer.ggml.eos_token_id", Value::U32(2));

    let mut rng = Rng(0x6d6f_6465_6c67_6174);
    let e = N_EMBD;
    w.tensor("token_embd.weight", &[e, n_vocab], rng.fill(e * n_vocab, 0.5));
    for l in 0..N_LAYER {
        w.tensor(&format!("blk.{l}.attn_norm.weight"), &[e], vec![1.0; e]);
        for t in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            w.tensor(&format!("blk.{l}.{t}.weight"), &[e, e], rng.fill(e * e, 0.2));
        }
        w.tensor(&format!("blk.{l}.ffn_norm.weight"), &[e], vec![1.0; e]);
        w.tensor(&format!("blk.{l}.ffn_gate.weight"), &[e, N_FF], rng.fill(e * N_FF, 0.2));
        w.tensor(&format!("blk.{l}.ffn_up.weight"), &[e, N_FF], rng.fill(e * N_FF, 0.2));
        w.tensor(&format!("blk.{l}.ffn_down.weight"), &[N_FF, e], rng.fill(N_FF * e, 0.2));
    }
    w.tensor("output_norm.weight", &[e], vec![1.0; e]);
    let mut output = vec![0.0f32; e * n_vocab];
    for i in 0..WORDS.len() {
        let u = rng.fill(e, 4.0);
        for (j, x) in u.iter().enumerate() {
            output[(first_word + i) * e + j] = *x;
            output[(first_word + WORDS.len() + i) * e + j] = -*x;
        }
    }
    w.tensor("output.weight", &[e, n_vocab], output);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_deterministic_and_well_formed() {
        let a = tiny_llama();
        assert_eq!(a, tiny_llama());
        assert_eq!(&a[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(a[4..8].try_into().unwrap()), 3);
        assert!(a.len().is_multiple_of(ALIGNMENT));
        assert!(a.len() < 512 << 10, "{} bytes", a.len());
    }
}
