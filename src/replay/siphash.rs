//! SipHash-1-3 with a 128-bit output, for the memory store's keys: one pass over the key gives
//! both halves, where two 64-bit SipHashes (the standard library's) would read it twice.
//!
//! Written from the SipHash paper (Aumasson and Bernstein, 2012) and its reference code's
//! 128-bit mode; [`sip128`] is generic in the round counts so that the tests can check the
//! reference's published SipHash-2-4-128 vectors.

/// SipHash-`C`-`D` of `data` under `key`, 128-bit output mode.
pub(crate) fn sip128<const C: usize, const D: usize>(key: [u64; 2], data: &[u8]) -> u128 {
    let mut s = State {
        v: [
            0x736f_6d65_7073_6575 ^ key[0],
            // 0xee: the 128-bit mode's tweak.
            0x646f_7261_6e64_6f6d ^ key[1] ^ 0xee,
            0x6c79_6765_6e65_7261 ^ key[0],
            0x7465_6462_7974_6573 ^ key[1],
        ],
    };
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        s.absorb::<C>(u64::from_le_bytes(bytes));
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    // The length's low byte goes in the top byte of the last word.
    last[7] = data.len() as u8;
    s.absorb::<C>(u64::from_le_bytes(last));
    s.v[2] ^= 0xee;
    s.rounds::<D>();
    let low = s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3];
    s.v[1] ^= 0xdd;
    s.rounds::<D>();
    let high = s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3];
    u128::from(high) << 64 | u128::from(low)
}

struct State {
    v: [u64; 4],
}

impl State {
    fn absorb<const C: usize>(&mut self, m: u64) {
        self.v[3] ^= m;
        self.rounds::<C>();
        self.v[0] ^= m;
    }

    fn rounds<const N: usize>(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        for _ in 0..N {
            v0 = v0.wrapping_add(v1);
            v1 = v1.rotate_left(13) ^ v0;
            v0 = v0.rotate_left(32);
            v2 = v2.wrapping_add(v3);
            v3 = v3.rotate_left(16) ^ v2;
            v0 = v0.wrapping_add(v3);
            v3 = v3.rotate_left(21) ^ v0;
            v2 = v2.wrapping_add(v1);
            v1 = v1.rotate_left(17) ^ v2;
            v2 = v2.rotate_left(32);
        }
        self.v = [v0, v1, v2, v3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SipHash-2-4-128 of the messages `00`, `00 01`, ... (length = index) under the key
    /// `00 01 .. 0f`: entries 0 to 15, 31, 32 and 63 of `vectors_sip128` in the reference
    /// implementation (github.com/veorq/SipHash, vectors.h), as output bytes.
    const VECTORS: [(usize, [u8; 16]); 19] = [
        (0, hex("a3817f04ba25a8e66df67214c7550293")),
        (1, hex("da87c1d86b99af44347659119b22fc45")),
        (2, hex("8177228da4a45dc7fca38bdef60affe4")),
        (3, hex("9c70b60c5267a94e5f33b6b02985ed51")),
        (4, hex("f88164c12d9c8faf7d0f6e7c7bcd5579")),
        (5, hex("1368875980776f8854527a07690e9627")),
        (6, hex("14eeca338b208613485ea0308fd7a15e")),
        (7, hex("a1f1ebbed8dbc153c0b84aa61ff08239")),
        (8, hex("3b62a9ba6258f5610f83e264f31497b4")),
        (9, hex("264499060ad9baabc47f8b02bb6d71ed")),
        (10, hex("00110dc378146956c95447d3f3d0fbba")),
        (11, hex("0151c568386b6677a2b4dc6f81e5dc18")),
        (12, hex("d626b266905ef35882634df68532c125")),
        (13, hex("9869e247e9c08b10d029934fc4b952f7")),
        (14, hex("31fcefac66d7de9c7ec7485fe4494902")),
        (15, hex("5493e99933b0a8117e08ec0f97cfc3d9")),
        (31, hex("2939b0183223fafc1723de4f52c43d35")),
        (32, hex("7c3956ca5eeafc3e363e9d556546eb68")),
        (63, hex("5150d1772f50834a503e069a973fbd7c")),
    ];

    const fn hex(s: &str) -> [u8; 16] {
        let s = s.as_bytes();
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = digit(s[2 * i]) << 4 | digit(s[2 * i + 1]);
            i += 1;
        }
        out
    }

    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }

    fn reference_key() -> [u64; 2] {
        let key: Vec<u8> = (0..16).collect();
        [
            u64::from_le_bytes(key[..8].try_into().unwrap()),
            u64::from_le_bytes(key[8..].try_into().unwrap()),
        ]
    }

    #[test]
    fn matches_the_reference_vectors() {
        let message: Vec<u8> = (0..64).collect();
        for (len, want) in VECTORS {
            let got = sip128::<2, 4>(reference_key(), &message[..len]);
            // The reference writes the first 64-bit half, then the second, each little-endian.
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(got as u64).to_le_bytes());
            bytes[8..].copy_from_slice(&((got >> 64) as u64).to_le_bytes());
            assert_eq!(bytes, want, "message of {len} bytes");
        }
    }

    #[test]
    fn depends_on_key_length_and_every_byte() {
        let key = reference_key();
        let base = sip128::<1, 3>(key, b"default:standard-webhooks:id:msg_1");
        assert_ne!(
            base,
            sip128::<1, 3>([key[0] ^ 1, key[1]], b"default:standard-webhooks:id:msg_1")
        );
        assert_ne!(
            base,
            sip128::<1, 3>(key, b"default:standard-webhooks:id:msg_2")
        );
        assert_ne!(
            base,
            sip128::<1, 3>(key, b"default:standard-webhooks:id:msg_1\0")
        );
        assert_ne!(sip128::<1, 3>(key, b""), sip128::<1, 3>(key, b"\0"));
    }
}
