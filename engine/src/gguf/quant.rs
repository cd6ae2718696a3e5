//! ggml tensor types and their dequantisation to f32, following the block
//! layouts of ggml's `ggml-common.h` / `ggml-quants.c` (little-endian).

use half::{bf16, f16};
use rayon::prelude::*;

/// A ggml tensor element type, by the numeric id GGUF stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// Any id this engine does not know by name (IQ* types, newer types).
    Other(u32),
}

/// Elements per super-block of the k-quants.
const QK_K: usize = 256;

impl GgmlType {
    pub fn from_id(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// ggml's name for the type, as llama.cpp prints it.
    pub fn name(self) -> String {
        match self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q5_0 => "Q5_0".into(),
            GgmlType::Q5_1 => "Q5_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
            GgmlType::Q8_1 => "Q8_1".into(),
            GgmlType::Q2K => "Q2_K".into(),
            GgmlType::Q3K => "Q3_K".into(),
            GgmlType::Q4K => "Q4_K".into(),
            GgmlType::Q5K => "Q5_K".into(),
            GgmlType::Q6K => "Q6_K".into(),
            GgmlType::Q8K => "Q8_K".into(),
            GgmlType::I8 => "I8".into(),
            GgmlType::I16 => "I16".into(),
            GgmlType::I32 => "I32".into(),
            GgmlType::I64 => "I64".into(),
            GgmlType::F64 => "F64".into(),
            GgmlType::BF16 => "BF16".into(),
            GgmlType::Other(id) => format!("type id {id}"),
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for a type whose
    /// layout is unknown here (then the file cannot even be laid out).
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 | GgmlType::I32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => (1, 2),
            GgmlType::I8 => (1, 1),
            GgmlType::I64 | GgmlType::F64 => (1, 8),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2K => (QK_K, 84),
            GgmlType::Q3K => (QK_K, 110),
            GgmlType::Q4K => (QK_K, 144),
            GgmlType::Q5K => (QK_K, 176),
            GgmlType::Q6K => (QK_K, 210),
            GgmlType::Q8K => (QK_K, 292),
            GgmlType::Other(_) => return None,
        })
    }

    /// Whether [`dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q4K
                | GgmlType::Q5K
                | GgmlType::Q6K
        )
    }

    /// Bytes that `n_elements` of this type occupy, or `None` when the count
    /// is not a whole number of blocks or overflows.
    pub fn byte_size(self, n_elements: u64) -> Option<u64> {
        let (block, bytes) = self.block_layout()?;
        let (block, bytes) = (block as u64, bytes as u64);
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(bytes)
    }
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantises `data` (exactly the bytes of a whole number of blocks of
/// `ty`) into f32, in parallel over blocks. Returns `None` for a type this
/// engine cannot dequantise or a byte length that is not whole blocks; the
/// caller turns that into an error naming the tensor.
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Option<Vec<f32>> {
    if !ty.can_dequantize() {
        return None;
    }
    let (block, bytes) = ty.block_layout()?;
    if !data.len().is_multiple_of(bytes) {
        return None;
    }
    let n_blocks = data.len() / bytes;
    let mut out = vec![0f32; n_blocks * block];
    let kernel: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q4K => block_q4_k,
        GgmlType::Q5K => block_q5_k,
        GgmlType::Q6K => block_q6_k,
        _ => return None,
    };
    // Group blocks so that each rayon task does a meaningful amount of work
    // (scalar types have one element per block).
    let group = (4096 / block).max(1);
    out.par_chunks_mut(block * group)
        .zip(data.par_chunks(bytes * group))
        .for_each(|(ys, bs)| {
            for (y, b) in ys.chunks_exact_mut(block).zip(bs.chunks_exact(bytes)) {
                kernel(b, y);
            }
        });
    Some(out)
}

/// Q4_0: `f16 d; u8 qs[16]`; low nibbles are elements 0..16, high nibbles
/// 16..32, each `(q - 8) * d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `f16 d; f16 m; u8 qs[16]`; each element `q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0: `f16 d; u8 qh[4]; u8 qs[16]`; the fifth bit of element `j` is bit
/// `j` of the little-endian u32 `qh`; each element `(q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for (j, &q) in qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q & 0x0F) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `f16 d; f16 m; u8 qh[4]; u8 qs[16]`; each element `q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for (j, &q) in qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q & 0x0F) as u32 | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// Q8_0: `f16 d; i8 qs[32]`; each element `q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..34].iter().enumerate() {
        y[j] = (q as i8) as f32 * d;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block,
/// packed into 12 bytes as ggml's `get_scale_min_k4` reads them.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        let d = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d as f32, m as f32)
    }
}

/// Q4_K: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`. Eight sub-blocks of
/// 32; each 64-element chunk takes the low then the high nibbles of 32
/// bytes; element `d * sc * q - dmin * m`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1, dmin * m1);
        let (d2, m2) = (d * sc2, dmin * m2);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let out = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K: `f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]`; as Q4_K
/// with a fifth bit per element taken from `qh`, two bits per chunk.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1, dmin * m1);
        let (d2, m2) = (d * sc2, dmin * m2);
        let u1 = 1u8 << (2 * chunk);
        let u2 = 2u8 << (2 * chunk);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let out = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[l] = d1 * ((q[l] & 0x0F) + hi1) as f32 - m1;
            out[l + 32] = d2 * ((q[l] >> 4) + hi2) as f32 - m2;
        }
    }
}

/// Q6_K: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`. Two halves of 128
/// elements; within a half, four runs of 32 take low/high nibbles of `ql`
/// and 2-bit fields of `qh`; element `d * scale * (q - 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[64 * half..64 * half + 64];
        let qh = &qh_all[32 * half..32 * half + 32];
        let sc = &sc_all[8 * half..8 * half + 8];
        let out = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn type_ids_and_sizes() {
        assert_eq!(GgmlType::from_id(3), GgmlType::Q4_1);
        assert_eq!(GgmlType::from_id(30), GgmlType::BF16);
        assert_eq!(GgmlType::from_id(99), GgmlType::Other(99));
        assert_eq!(GgmlType::Q4_1.byte_size(64), Some(40));
        assert_eq!(GgmlType::Q8_0.byte_size(33), None);
        assert_eq!(GgmlType::Q6K.byte_size(512), Some(420));
        assert_eq!(GgmlType::Other(99).byte_size(32), None);
        assert!(!GgmlType::Q2K.can_dequantize());
        assert_eq!(GgmlType::Q4K.name(), "Q4_K");
    }

    #[test]
    fn scalar_types() {
        let mut b = Vec::new();
        b.extend(1.5f32.to_le_bytes());
        b.extend((-2.25f32).to_le_bytes());
        assert_eq!(dequantize(GgmlType::F32, &b).unwrap(), vec![1.5, -2.25]);

        let b = [h(0.5), h(-3.0), h(65504.0)].concat();
        assert_eq!(
            dequantize(GgmlType::F16, &b).unwrap(),
            vec![0.5, -3.0, 65504.0]
        );

        // bf16 is the top half of an f32: 1.0 = 0x3F80, -2.0 = 0xC000.
        let b = [0x80u8, 0x3F, 0x00, 0xC0];
        assert_eq!(dequantize(GgmlType::BF16, &b).unwrap(), vec![1.0, -2.0]);
        // A ragged byte count is refused, not read past.
        assert!(dequantize(GgmlType::F32, &[0u8; 5]).is_none());
        assert!(dequantize(GgmlType::Q2K, &[0u8; 84]).is_none());
    }

    #[test]
    fn q4_0_block() {
        // d = 0.5; byte j holds low nibble j % 16 and high nibble 15 - j % 16.
        let mut b = h(0.5).to_vec();
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let y = dequantize(GgmlType::Q4_0, &b).unwrap();
        assert_eq!(y.len(), 32);
        // low nibbles 0..15 -> (q - 8) * 0.5 = -4.0 .. 3.5
        assert_eq!(y[0], -4.0);
        assert_eq!(y[8], 0.0);
        assert_eq!(y[15], 3.5);
        // high nibbles 15..0
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25, m = -1.0; every byte 0xA3: low 3, high 10.
        let b = [h(0.25).to_vec(), h(-1.0).to_vec(), vec![0xA3; 16]].concat();
        let y = dequantize(GgmlType::Q4_1, &b).unwrap();
        assert!(y[..16].iter().all(|&v| v == 3.0 * 0.25 - 1.0));
        assert!(y[16..].iter().all(|&v| v == 10.0 * 0.25 - 1.0));
        // Two blocks decode independently and in order.
        let b2 = [
            b.clone(),
            [h(1.0).to_vec(), h(2.0).to_vec(), vec![0x10; 16]].concat(),
        ]
        .concat();
        let y2 = dequantize(GgmlType::Q4_1, &b2).unwrap();
        assert_eq!(y2.len(), 64);
        assert_eq!(y2[32], 2.0);
        assert_eq!(y2[48], 3.0);
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.125).to_vec();
        for j in 0..32i8 {
            b.push((j - 16) as u8);
        }
        let y = dequantize(GgmlType::Q8_0, &b).unwrap();
        for (j, v) in y.iter().enumerate() {
            assert_eq!(*v, (j as f32 - 16.0) * 0.125);
        }
    }

    #[test]
    fn q5_0_and_q5_1_blocks() {
        // qh has bit 0 (element 0) and bit 16 (element 16) set.
        let qh: u32 = 1 | (1 << 16);
        let mut b = h(1.0).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend([0x21u8; 16]); // low 1, high 2
        let y = dequantize(GgmlType::Q5_0, &b).unwrap();
        assert_eq!(y[0], (1 + 16 - 16) as f32);
        assert_eq!(y[1], (1 - 16) as f32);
        assert_eq!(y[16], (2 + 16 - 16) as f32);
        assert_eq!(y[17], (2 - 16) as f32);

        let mut b = [h(2.0), h(0.5)].concat();
        b.extend(qh.to_le_bytes());
        b.extend([0x21u8; 16]);
        let y = dequantize(GgmlType::Q5_1, &b).unwrap();
        assert_eq!(y[0], 17.0 * 2.0 + 0.5);
        assert_eq!(y[1], 1.0 * 2.0 + 0.5);
        assert_eq!(y[16], 18.0 * 2.0 + 0.5);
        assert_eq!(y[31], 2.0 * 2.0 + 0.5);
    }

    #[test]
    fn q4_k_block() {
        // d = 1, dmin = 0.5. Scales: sub-blocks 0..4 take the low 6 bits of
        // bytes 0..4 (scale) and 4..8 (min); sub-blocks 4..8 combine nibbles
        // of bytes 8..12 with the top two bits of bytes 0..8.
        let mut scales = [0u8; 12];
        scales[0] = 2; // sub-block 0 scale 2
        scales[4] = 3; // sub-block 0 min 3
        scales[1] = 5; // sub-block 1 scale 5, min 0
                       // sub-block 4: scale = (s[8] & 15) | (s[0] >> 6) << 4 = 1 | 1<<4 = 17
                       //              min   = (s[8] >> 4) | (s[4] >> 6) << 4 = 2 | 0 = 2
        scales[0] |= 0b0100_0000;
        scales[8] = 0x21;
        let mut qs = [0u8; 128];
        qs[0] = 0x97; // chunk 0: element 0 = low 7, element 32 = high 9
        qs[64] = 0x04; // chunk 2: element 128 = low 4 (sub-block 4)
        let b = [
            h(1.0).to_vec(),
            h(0.5).to_vec(),
            scales.to_vec(),
            qs.to_vec(),
        ]
        .concat();
        let y = dequantize(GgmlType::Q4K, &b).unwrap();
        assert_eq!(y.len(), 256);
        assert_eq!(y[0], 2.0 * 7.0 - 0.5 * 3.0);
        assert_eq!(y[1], -1.5);
        assert_eq!(y[32], 5.0 * 9.0);
        assert_eq!(y[128], 17.0 * 4.0 - 0.5 * 2.0);
        assert_eq!(y[129], -1.0);
    }

    #[test]
    fn q5_k_block() {
        let mut scales = [0u8; 12];
        scales[0] = 1;
        scales[1] = 1;
        scales[2] = 1; // sub-block 2 (chunk 1, low nibbles)
        let mut qh = [0u8; 32];
        qh[0] = 0b0000_0101; // element 0 (chunk 0 low) and element 64 (chunk 1 low)
        qh[1] = 0b0000_0010; // element 33 (chunk 0 high)
        let mut qs = [0u8; 128];
        qs[0] = 0x03;
        qs[1] = 0x10;
        qs[32] = 0x02;
        let b = [
            h(1.0).to_vec(),
            h(0.0).to_vec(),
            scales.to_vec(),
            qh.to_vec(),
            qs.to_vec(),
        ]
        .concat();
        let y = dequantize(GgmlType::Q5K, &b).unwrap();
        assert_eq!(y[0], 19.0);
        assert_eq!(y[33], 17.0);
        assert_eq!(y[64], 18.0);
        assert_eq!(y[2], 0.0);
    }

    #[test]
    fn q6_k_block() {
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        let mut sc = [0i8; 16];
        sc[0] = 1;
        sc[2] = 2;
        sc[4] = -1;
        sc[6] = 3;
        sc[8] = 4; // second half, first run
        ql[0] = 0x5A; // element 0 low A, element 64 high 5
        ql[32] = 0x03; // element 32 low 3
        qh[0] = 0b1110_0110; // el 0: 2, el 32: 1, el 64: 2, el 96: 3
        ql[64] = 0x01; // second half element 128 low 1
        let b = [
            ql.to_vec(),
            qh.to_vec(),
            sc.iter().map(|&s| s as u8).collect(),
            h(0.5).to_vec(),
        ]
        .concat();
        let y = dequantize(GgmlType::Q6K, &b).unwrap();
        assert_eq!(y[0], 0.5 * 1.0 * ((0x0A | (2 << 4)) - 32) as f32);
        assert_eq!(y[32], 0.5 * 2.0 * ((0x03 | (1 << 4)) - 32) as f32);
        assert_eq!(y[64], -0.5 * ((0x05 | (2 << 4)) - 32) as f32);
        assert_eq!(y[96], 0.5 * 3.0 * ((3 << 4) - 32) as f32);
        assert_eq!(y[1], 0.5 * 1.0 * -32.0);
        assert_eq!(y[128], 0.5 * 4.0 * (1 - 32) as f32);
    }
}
