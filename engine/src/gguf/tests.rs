//! Tests of the GGUF reader and model mapping: synthetic files written byte
//! by byte, dequantisers checked against gguf-py (llama.cpp's Python
//! package) on random blocks, and the real SmolLM2 file when available.

use super::writer::{f32_tensor, write, TestTensor};
use super::*;

fn s(v: &str) -> MetaValue {
    MetaValue::String(v.to_string())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Blocks of random bytes (with sane f16 scales) and the values gguf-py's
/// `quants.dequantize` gives for them: `(type, block hex, (index, value)s,
/// sum)`.
#[allow(clippy::type_complexity)]
const GGUF_PY_BLOCKS: &[(GgmlType, &str, &[(usize, f64)], f64)] = &[
    (
        GgmlType::Q4K,
        "0a35ea37a94106a0956a26afbccdafe562f90a945f5693c642276ad5ab2da7394551370e99b2d74c3427fa48d732a1df70aca1e926115901dd06f27f8f063cd25e19a621f9bd0ccc21397c1ec795ca7748dc03d17a88934d85527357a2e64647f03e2fb81f223f4192c58efd5185f0711ef7677a1f132a818d882195a100b28d6b236b82481bd9fe630dc3ce3be4ebca",
        &[(0, 15.43798828125), (1, 105.826171875), (17, 2.525390625), (31, 183.3017578125), (63, -16.68017578125), (64, -18.7958984375), (100, -3.09130859375), (128, 89.59033203125), (200, 56.46728515625), (255, 117.0810546875)],
        10156.93115234375,
    ),
    (
        GgmlType::Q5K,
        "2834cd3689781e3721a557d8e5a703296dcb81db3f65cf9c1bdc5d1d8fc83f0b0bb4db71be572209851d3d24f4c0cf83fe4363f82f4759778955f6ced681cbea7179ced2c8f814a13472ff70ce369d8385452a44f318337f08cd1e614f235d3f83bc45fee9ee0403a79be118544441317c9311f85e0429b19f7ec0e156f65a3322e791b880ee995e3f0d307d2fbaf400693a179e0d027ed4e58be7a9ebc28a271d43a78855638144eb6603f7b2725de1",
        &[(0, 56.110107421875), (1, 30.393310546875), (17, 7.014404296875), (31, 30.393310546875), (63, 333.398193359375), (64, 153.876220703125), (100, 432.69921875), (128, 109.38525390625), (200, -2.904296875), (255, 48.88427734375)],
        26210.025390625,
    ),
    (
        GgmlType::Q6K,
        "116e3ab51681c4a374fec70a68b3e4bdc92b387987416c17ec90963ec766888ab4b80eba7c5cfd81121bea9cee1810dfd5169faf26cd7b5c30c8aba44d972299e8c7b41b9a1d2b0f180600a974d63b6332202c998e82b2522c49c4394c7d73265b6aaf61b288fbd0aecfa766616223611e764c93aa388ffabd0a6a6412b209971e2d827076f7e49ab8fa197271be53a3442b128cdad72bad0f8aeef42a0b9a26d74fc78f2562b8701097a55b5510543d27ed600de3200a6749307fd37899c118819af6674394c3f7aa5f93f32c810a370831",
        &[(0, -19.9677734375), (1, 39.935546875), (17, -433.001953125), (31, -160.37109375), (63, -113.3603515625), (64, -158.0126953125), (100, 86.3173828125), (128, -324.515625), (200, -103.76953125), (255, -198.8916015625)],
        3595.2998046875,
    ),
    (
        GgmlType::Q5_0,
        "c936f8abbe3b3f7f1183c3df8375c517b4e786a9aadf",
        &[(0, -0.424072265625), (1, -0.424072265625), (17, 2.968505859375), (31, -1.272216796875)],
        36.046142578125,
    ),
    (
        GgmlType::Q5_1,
        "342dad2e531c927b931fe8f16e795b9b331767e712dbe8f5",
        &[(0, 1.64898681640625), (1, 2.62457275390625), (17, 1.48638916015625), (31, 1.32379150390625)],
        44.881591796875,
    ),
    (
        GgmlType::Q4_0,
        "4d2ed99135550ec0193a8bed1783d53ec944",
        &[(0, 0.09844970703125), (1, -0.68914794921875), (17, 0.09844970703125), (31, -0.393798828125)],
        -2.756591796875,
    ),
    (
        GgmlType::Q8_0,
        "13308e60788d51e279a131f8130b3ea4bd2f5d95e57bd791436d840f4e6654608135",
        &[(0, -14.514404296875), (1, 12.22265625), (17, -13.6231689453125), (31, 6.7479248046875)],
        46.853515625,
    ),
];

#[test]
fn dequantisers_agree_with_gguf_py() {
    for (ty, block, points, sum) in GGUF_PY_BLOCKS {
        let y = dequantize(*ty, &hex(block)).unwrap();
        for &(i, v) in *points {
            let got = y[i] as f64;
            assert!(
                (got - v).abs() <= 1e-5 * v.abs().max(1.0),
                "{ty:?}[{i}] = {got} != {v}"
            );
        }
        let total: f64 = y.iter().map(|&v| v as f64).sum();
        assert!(
            (total - sum).abs() < 1e-3 * sum.abs().max(1.0),
            "{ty:?} sum {total} != {sum}"
        );
    }
}

/// The converter's `permute` (HF → GGUF), to check that loading undoes it.
fn permute_like_converter(rows_hf: &[f32], rows: usize, cols: usize, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; rows * cols];
    for h in 0..rows / head_dim {
        for s in 0..2 {
            for i in 0..half {
                let src = (h * head_dim + s * half + i) * cols;
                let dst = (h * head_dim + 2 * i + s) * cols;
                out[dst..dst + cols].copy_from_slice(&rows_hf[src..src + cols]);
            }
        }
    }
    out
}

fn ramp(n: usize, offset: f32) -> Vec<f32> {
    (0..n).map(|i| offset + i as f32 * 0.01).collect()
}

const HIDDEN: usize = 8;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 4;
const INTER: usize = 6;
const VOCAB: usize = 5;

fn tiny_meta() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", s("llama")),
        ("general.name", s("tiny")),
        ("llama.context_length", MetaValue::U32(128)),
        ("llama.embedding_length", MetaValue::U32(HIDDEN as u32)),
        ("llama.block_count", MetaValue::U32(1)),
        ("llama.feed_forward_length", MetaValue::U32(INTER as u32)),
        ("llama.attention.head_count", MetaValue::U32(HEADS as u32)),
        (
            "llama.attention.head_count_kv",
            MetaValue::U32(KV_HEADS as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        ),
        ("llama.rope.freq_base", MetaValue::F32(10000.0)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(["<s>", "</s>", "a", "b", "ab"].map(s).to_vec()),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array([3, 3, 1, 1, 1].map(MetaValue::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", MetaValue::Array(vec![s("a b")])),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(0)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.eot_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true)),
        ("tokenizer.chat_template", s("{{ messages }}")),
    ]
}

/// A tensor as Hugging Face lays it out: name, shape, row-major values.
type HfTensor = (String, Vec<usize>, Vec<f32>);

/// HF-order tensors of the tiny model, and the GGUF tensors that store them.
fn tiny_tensors() -> (Vec<HfTensor>, Vec<TestTensor>) {
    let q = HEADS * HEAD_DIM;
    let kv = KV_HEADS * HEAD_DIM;
    let hf: Vec<HfTensor> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![VOCAB, HIDDEN],
            ramp(VOCAB * HIDDEN, 0.0),
        ),
        ("model.norm.weight".into(), vec![HIDDEN], ramp(HIDDEN, 1.0)),
        (
            "model.layers.0.input_layernorm.weight".into(),
            vec![HIDDEN],
            ramp(HIDDEN, 2.0),
        ),
        (
            "model.layers.0.post_attention_layernorm.weight".into(),
            vec![HIDDEN],
            ramp(HIDDEN, 3.0),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight".into(),
            vec![q, HIDDEN],
            ramp(q * HIDDEN, 4.0),
        ),
        (
            "model.layers.0.self_attn.k_proj.weight".into(),
            vec![kv, HIDDEN],
            ramp(kv * HIDDEN, 5.0),
        ),
        (
            "model.layers.0.self_attn.v_proj.weight".into(),
            vec![kv, HIDDEN],
            ramp(kv * HIDDEN, 6.0),
        ),
        (
            "model.layers.0.self_attn.o_proj.weight".into(),
            vec![HIDDEN, q],
            ramp(HIDDEN * q, 7.0),
        ),
        (
            "model.layers.0.mlp.gate_proj.weight".into(),
            vec![INTER, HIDDEN],
            ramp(INTER * HIDDEN, 8.0),
        ),
        (
            "model.layers.0.mlp.up_proj.weight".into(),
            vec![INTER, HIDDEN],
            ramp(INTER * HIDDEN, 9.0),
        ),
        (
            "model.layers.0.mlp.down_proj.weight".into(),
            vec![HIDDEN, INTER],
            ramp(HIDDEN * INTER, 10.0),
        ),
    ];
    let gguf = hf
        .iter()
        .map(|(name, shape, data)| {
            let data = if name.contains("q_proj") || name.contains("k_proj") {
                permute_like_converter(data, shape[0], shape[1], HEAD_DIM)
            } else {
                data.clone()
            };
            f32_tensor(&gguf_name(name), shape, &data)
        })
        .collect();
    (hf, gguf)
}

fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn loads_tiny_llama_undoing_qk_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let (hf, tensors) = tiny_tensors();
    let path = write_file(&dir, "tiny.gguf", &write(&tiny_meta(), &tensors, 32));
    let m = load_gguf(&path).unwrap();
    let c = &m.config;
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers
        ),
        (VOCAB, HIDDEN, INTER, 1)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (HEADS, KV_HEADS, HEAD_DIM)
    );
    assert_eq!(c.rope_style, RopeStyle::Neox);
    assert_eq!(c.rope_theta, 10000.0);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert_eq!(c.max_position_embeddings, 128);
    assert!(
        c.tie_word_embeddings,
        "no output.weight means tied embeddings"
    );
    assert_eq!(c.bos_token_id, Some(0));
    assert_eq!(c.eos_token_ids, vec![1]);
    assert_eq!(m.weights.tensors.len(), hf.len());
    for (name, shape, data) in &hf {
        let t = &m.weights.tensors[name];
        assert_eq!(&t.shape, shape, "{name}");
        assert_eq!(&t.data, data, "{name} differs from the Hugging Face layout");
    }
    assert_eq!(m.tokenizer.tokens.len(), 5);
    assert_eq!(m.tokenizer.merges, vec!["a b".to_string()]);
    assert_eq!(m.tokenizer.add_bos_token, Some(true));
    assert_eq!(m.tokenizer.pre.as_deref(), Some("smollm"));
    assert_eq!(m.chat_template.as_deref(), Some("{{ messages }}"));
    assert_eq!(m.summary.tensor_types.get("F32"), Some(&hf.len()));
    assert!(m.summary.qk_unpermuted);
    assert_eq!(m.summary.name.as_deref(), Some("tiny"));
}

#[test]
fn untied_output_and_custom_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut tensors) = tiny_tensors();
    tensors.push(f32_tensor(
        "output.weight",
        &[VOCAB, HIDDEN],
        &ramp(VOCAB * HIDDEN, -1.0),
    ));
    let mut meta = tiny_meta();
    meta.push(("general.alignment", MetaValue::U32(64)));
    let path = write_file(&dir, "untied.gguf", &write(&meta, &tensors, 64));
    let m = load_gguf(&path).unwrap();
    assert!(!m.config.tie_word_embeddings);
    assert_eq!(m.weights.tensors["lm_head.weight"].data[0], -1.0);
    assert_eq!(m.summary.alignment, 64);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.data_start() % 64, 0);
}

#[test]
fn all_metadata_value_types_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let meta = vec![
        ("a.u8", MetaValue::U8(200)),
        ("a.i8", MetaValue::I8(-5)),
        ("a.u16", MetaValue::U16(60000)),
        ("a.i16", MetaValue::I16(-30000)),
        ("a.u32", MetaValue::U32(4_000_000_000)),
        ("a.i32", MetaValue::I32(-7)),
        ("a.u64", MetaValue::U64(1 << 40)),
        ("a.i64", MetaValue::I64(-(1 << 40))),
        ("a.f32", MetaValue::F32(0.5)),
        ("a.f64", MetaValue::F64(-0.25)),
        ("a.bool", MetaValue::Bool(true)),
        ("a.str", s("héllo")),
        (
            "a.arr",
            MetaValue::Array(vec![MetaValue::F32(1.0), MetaValue::F32(2.0)]),
        ),
        (
            "a.nested",
            MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::U8(1)])]),
        ),
        ("a.empty", MetaValue::Array(vec![])),
    ];
    let path = write_file(&dir, "meta.gguf", &write(&meta, &[], 32));
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    for (k, v) in &meta {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.get("a.i8").unwrap().as_u64(), None);
    assert_eq!(f.get("a.i8").unwrap().as_i64(), Some(-5));
    assert_eq!(f.get("a.u32").unwrap().as_f64(), Some(4e9));
}

#[test]
fn quantised_tensor_loads_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // One Q8_0 row of 32: d = 0.5, q = j - 16.
    let mut bytes = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    bytes.extend((0..32i8).map(|j| (j - 16) as u8));
    let t = TestTensor {
        name: "x".into(),
        dims: vec![32, 1],
        type_id: 8,
        bytes,
    };
    let path = write_file(&dir, "q.gguf", &write(&[], &[t], 32));
    let f = GgufFile::open(&path).unwrap();
    let info = f.tensor("x").unwrap();
    assert_eq!(info.shape(), vec![1, 32]);
    assert_eq!(info.ggml_type, GgmlType::Q8_0);
    let y = f.dequantize(info).unwrap();
    assert_eq!(y[0], -8.0);
    assert_eq!(y[31], 7.5);
}

fn err_of(bytes: &[u8]) -> (GgufError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "bad.gguf", bytes);
    let e = load_gguf(&path).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bad.gguf"),
        "error does not name the file: {msg}"
    );
    (e, msg)
}

#[test]
fn bad_magic_and_version() {
    let (e, _) = err_of(b"GGML\x03\0\0\0 rest of file");
    assert!(matches!(e, GgufError::BadMagic { .. }));
    let mut v1 = write(&tiny_meta(), &[], 32);
    v1[4] = 1;
    let (e, msg) = err_of(&v1);
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 1, .. }),
        "{msg}"
    );
    let mut be = write(&tiny_meta(), &[], 32);
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    let (_, msg) = err_of(&be);
    assert!(msg.contains("big-endian"), "{msg}");
    let (e, _) = err_of(b"GG");
    assert!(matches!(e, GgufError::Truncated { .. }));
}

#[test]
fn truncated_data_names_the_tensor() {
    let (_, tensors) = tiny_tensors();
    let bytes = write(&tiny_meta(), &tensors, 32);
    let (e, msg) = err_of(&bytes[..bytes.len() - 10]);
    assert!(matches!(e, GgufError::Truncated { .. }), "{msg}");
    assert!(msg.contains("blk.0.ffn_down.weight"), "{msg}");
    // Cut inside the metadata.
    let (e, msg) = err_of(&bytes[..100]);
    assert!(matches!(e, GgufError::Truncated { .. }), "{msg}");
}

#[test]
fn unsupported_types_name_the_tensor() {
    let (_, mut tensors) = tiny_tensors();
    // Q2_K: a known layout (84 bytes per 256) that is not dequantised.
    tensors[1] = TestTensor {
        name: "output_norm.weight".into(),
        dims: vec![256],
        type_id: 10,
        bytes: vec![0; 84],
    };
    let (e, msg) = err_of(&write(&tiny_meta(), &tensors, 32));
    assert!(matches!(e, GgufError::UnsupportedType { .. }), "{msg}");
    assert!(
        msg.contains("output_norm.weight") && msg.contains("Q2_K"),
        "{msg}"
    );
    // A type id nobody knows.
    tensors[1].type_id = 77;
    let (e, msg) = err_of(&write(&tiny_meta(), &tensors, 32));
    assert!(matches!(e, GgufError::UnsupportedType { .. }), "{msg}");
    assert!(msg.contains("type id 77"), "{msg}");
}

#[test]
fn shape_mismatch_and_missing_tensor() {
    let (_, mut tensors) = tiny_tensors();
    let i = tensors
        .iter()
        .position(|t| t.name == "blk.0.ffn_up.weight")
        .unwrap();
    tensors[i] = f32_tensor(
        "blk.0.ffn_up.weight",
        &[INTER + 1, HIDDEN],
        &ramp((INTER + 1) * HIDDEN, 0.0),
    );
    let (e, msg) = err_of(&write(&tiny_meta(), &tensors, 32));
    assert!(matches!(e, GgufError::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("blk.0.ffn_up.weight") && msg.contains("[7, 8]"),
        "{msg}"
    );

    let (_, mut tensors) = tiny_tensors();
    tensors.retain(|t| t.name != "blk.0.attn_v.weight");
    let (e, msg) = err_of(&write(&tiny_meta(), &tensors, 32));
    assert!(matches!(e, GgufError::MissingTensor { .. }), "{msg}");
    assert!(msg.contains("blk.0.attn_v.weight"), "{msg}");

    let (_, mut tensors) = tiny_tensors();
    tensors.push(f32_tensor("blk.0.ffn_gate_exps.weight", &[2], &[0.0, 0.0]));
    let (e, msg) = err_of(&write(&tiny_meta(), &tensors, 32));
    assert!(matches!(e, GgufError::UnexpectedTensor { .. }), "{msg}");
}

#[test]
fn metadata_errors_name_the_key() {
    let (_, tensors) = tiny_tensors();
    let mut meta = tiny_meta();
    meta[0].1 = s("mamba");
    let (e, msg) = err_of(&write(&meta, &tensors, 32));
    assert!(
        matches!(e, GgufError::UnsupportedArchitecture { .. }),
        "{msg}"
    );
    assert!(msg.contains("mamba"));

    let mut meta = tiny_meta();
    meta.retain(|(k, _)| *k != "llama.block_count");
    let (e, msg) = err_of(&write(&meta, &tensors, 32));
    assert!(matches!(e, GgufError::MissingMetadata { .. }), "{msg}");
    assert!(msg.contains("llama.block_count"), "{msg}");

    let mut meta = tiny_meta();
    meta[3].1 = s("eight");
    let (_, msg) = err_of(&write(&meta, &tensors, 32));
    assert!(msg.contains("llama.embedding_length"), "{msg}");

    let mut meta = tiny_meta();
    meta.push(("llama.rope.scaling.type", s("yarn")));
    meta.push(("llama.rope.scaling.factor", MetaValue::F32(4.0)));
    let (e, msg) = err_of(&write(&meta, &tensors, 32));
    assert!(
        matches!(e, GgufError::UnsupportedRopeScaling { .. }),
        "{msg}"
    );
}

#[test]
fn llama3_rope_freqs_become_rope_scaling() {
    let expected = RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    let head_dim = 128;
    let factors: Vec<f32> = llama3_rope_factors(&expected, 500000.0, head_dim)
        .iter()
        .map(|&f| f as f32)
        .collect();
    // The factors span all three regimes (1, factor, and smoothed).
    assert_eq!(factors[0], 1.0);
    assert_eq!(factors[63], 8.0);
    assert!(factors.iter().any(|&f| f > 1.0 && f < 8.0));
    let got = rope_scaling_from_factors(Path::new("x.gguf"), &factors, 500000.0, head_dim).unwrap();
    assert_eq!(got, expected);
    let bogus = vec![2.0f32; 64];
    assert!(rope_scaling_from_factors(Path::new("x.gguf"), &bogus, 500000.0, head_dim).is_err());
}

#[test]
fn name_mapping_round_trips() {
    for g in [
        "token_embd.weight",
        "output.weight",
        "output_norm.weight",
        "blk.12.attn_q.weight",
        "blk.3.attn_k.bias",
        "blk.0.attn_output.weight",
        "blk.7.ffn_down.weight",
        "blk.7.attn_k_norm.weight",
    ] {
        let hf = hf_name(g).unwrap();
        assert_eq!(gguf_name(&hf), g);
    }
    assert_eq!(
        hf_name("blk.2.attn_output.weight").unwrap(),
        "model.layers.2.self_attn.o_proj.weight"
    );
    assert_eq!(
        hf_name("blk.2.ffn_norm.weight").unwrap(),
        "model.layers.2.post_attention_layernorm.weight"
    );
    assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    assert_eq!(hf_name("blk.1.ffn_gate_exps.weight"), None);
}

/// The real SmolLM2 file, when `SHARDLINE_SMOLLM2_GGUF` points at it.
pub(crate) fn smollm2_path() -> Option<PathBuf> {
    match std::env::var_os("SHARDLINE_SMOLLM2_GGUF") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            println!("skipped: set SHARDLINE_SMOLLM2_GGUF (scripts/fetch-smollm2.sh downloads it)");
            None
        }
    }
}

#[test]
fn smollm2_loads_and_matches_gguf_py() {
    let Some(path) = smollm2_path() else { return };
    let m = load_gguf(&path).unwrap();
    let c = &m.config;
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (9, 3, 64)
    );
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.rope_style, RopeStyle::Neox);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.bos_token_id, Some(1));
    // <|im_end|> from the metadata, then <|endoftext|> (a control token
    // llama.cpp also stops on).
    assert_eq!(c.eos_token_ids, vec![2, 0]);
    let types: Vec<(&str, usize)> = m
        .summary
        .tensor_types
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(types, vec![("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]);
    assert_eq!(m.summary.version, 3);
    assert_eq!(m.weights.tensors.len(), 272);
    assert_eq!(m.tokenizer.tokens.len(), 49152);
    assert_eq!(m.tokenizer.merges.len(), 48900);
    assert_eq!(m.tokenizer.pre.as_deref(), Some("smollm"));
    assert!(m
        .chat_template
        .as_deref()
        .unwrap_or("")
        .contains("<|im_start|>"));

    // Reference values from gguf-py's dequantize; q/k rows un-permuted with
    // numpy as the inverse of the converter's reshape/swapaxes.
    let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
    let w = &m.weights.tensors;
    let e = &w["model.embed_tokens.weight"];
    assert_eq!(e.shape, vec![49152, 576]);
    let row = |t: &Tensor, r: usize| t.data[r * t.shape[1]..(r + 1) * t.shape[1]].to_vec();
    for (got, want) in row(e, 0).iter().zip([
        -0.10654449462890625,
        0.032978057861328125,
        0.048198699951171875,
        -0.022830963134765625,
    ]) {
        assert!(close(*got, want), "{got} vs {want}");
    }
    assert!(close(row(e, 1000)[1], -0.0739593505859375));
    assert!(close(row(e, 49151)[575], -0.0417022705078125));
    let abs: f64 = e.data.iter().map(|v| v.abs() as f64).sum();
    assert!((abs - 2802153.619805813).abs() < 1.0, "{abs}");

    let q = &w["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(q.shape, vec![576, 576]);
    for (got, want) in
        row(q, 1)[..4]
            .iter()
            .zip([-0.1591796875, 0.39794921875, -0.0198974609375, -1.2734375])
    {
        assert!(close(*got, want), "q row 1: {got} vs {want}");
    }
    assert!(close(row(q, 33)[5], -0.06280517578125));
    assert!(close(row(q, 575)[575], -0.255859375));
    assert!(close(row(q, 96)[0], 0.333251953125));
    let k = &w["model.layers.0.self_attn.k_proj.weight"];
    assert_eq!(k.shape, vec![192, 576]);
    assert!(close(row(k, 1)[1], 0.09136962890625));
    assert!(close(row(k, 191)[0], 0.015869140625));
    let d = &w["model.layers.29.mlp.down_proj.weight"];
    assert_eq!(d.shape, vec![576, 1536]);
    assert!(close(row(d, 575)[1535], 0.056640625));
    assert!(close(row(d, 0)[0], -0.2733154296875));
    let n = &w["model.norm.weight"];
    assert!(close(n.data[0], 1.7578125) && close(n.data[2], 1.78125));
}
