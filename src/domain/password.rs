//! Password hashing with argon2id at OWASP's recommended parameters.
//!
//! Each hash needs 19 MiB of working memory. Allocating it per hash on ever-changing blocking
//! threads leaves the allocator holding every block it ever handed out (the service's memory
//! then grows with the number of threads that ever hashed), so callers keep a [`HashMemory`]
//! per concurrent hash and pass it in: the memory is allocated once and reused.

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::Password;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
/// Bytes of hash output stored (argon2's default).
const OUTPUT_LEN: usize = 32;
/// Bytes of random salt per hash (the PHC format's recommendation).
const SALT_LEN: usize = 16;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .expect("the argon2 parameters are constants that argon2 accepts");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The working memory of one hash at our parameters (19 MiB), kept and reused.
pub struct HashMemory(Vec<Block>);

impl Default for HashMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl HashMemory {
    pub fn new() -> Self {
        Self(vec![Block::default(); MEMORY_KIB as usize])
    }
}

/// Hashes a password into a PHC string with a fresh random salt. CPU-heavy (tens of ms): call
/// it on a blocking thread.
pub fn hash(password: &Password, memory: &mut HashMemory) -> String {
    hash_with(password.expose().as_bytes(), memory)
}

/// The same hash over raw bytes.
pub fn hash_with(password: &[u8], memory: &mut HashMemory) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    hasher()
        .hash_password_into_with_memory(password, &salt, &mut out, &mut memory.0[..])
        .expect("hashing with valid parameters, salt and output length cannot fail");
    let salt = Salt::new(&salt).expect("16 bytes is a valid salt");
    let out = Output::new(&out).expect("32 bytes is a valid output");
    format!("$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}${salt}${out}")
}

/// A hash that allocates its own memory (a one-off, or the benchmark's floor).
pub fn hash_bytes(password: &[u8]) -> String {
    hash_with(password, &mut HashMemory::new())
}

/// Checks a password against a stored PHC string; a malformed stored hash never verifies.
/// Hashes at our parameters reuse `memory`; any other (older) parameters are still checked.
pub fn verify(password: &str, phc: &str, memory: &mut HashMemory) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ours = parsed.algorithm.as_str() == "argon2id"
        && parsed.version == Some(19)
        && parsed.params.get_decimal("m") == Some(MEMORY_KIB)
        && parsed.params.get_decimal("t") == Some(ITERATIONS)
        && parsed.params.get_decimal("p") == Some(PARALLELISM);
    match (ours, &parsed.salt, &parsed.hash) {
        (true, Some(salt), Some(expected)) if expected.len() == OUTPUT_LEN => {
            let mut out = [0u8; OUTPUT_LEN];
            hasher()
                .hash_password_into_with_memory(
                    password.as_bytes(),
                    salt,
                    &mut out,
                    &mut memory.0[..],
                )
                .is_ok()
                && bool::from(out.ct_eq(expected.as_bytes()))
        }
        _ => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
    }
}

/// The library's own hash (allocating), to check ours against in tests.
#[cfg(test)]
fn library_hash(password: &[u8]) -> String {
    use argon2::password_hash::PasswordHasher;
    hasher()
        .hash_password(password)
        .expect("hashing with valid parameters and a generated salt cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_salted() {
        let p = Password::parse("SecurePass123!".into()).unwrap();
        let mut memory = HashMemory::new();
        let a = hash(&p, &mut memory);
        let b = hash(&p, &mut memory);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("SecurePass123!"));
    }

    #[test]
    fn verifies_right_password_only() {
        let p = Password::parse("SecurePass123!".into()).unwrap();
        let mut memory = HashMemory::new();
        let h = hash(&p, &mut memory);
        assert!(verify("SecurePass123!", &h, &mut memory));
        assert!(!verify("SecurePass124!", &h, &mut memory));
        assert!(!verify("SecurePass123!", "not-a-hash", &mut memory));
    }

    #[test]
    fn our_hashes_and_the_librarys_verify_each_other() {
        let mut memory = HashMemory::new();
        let ours = hash_with(b"SecurePass123!", &mut memory);
        let parsed = PasswordHash::new(&ours).expect("a well-formed PHC string");
        assert!(hasher().verify_password(b"SecurePass123!", &parsed).is_ok());
        assert!(hasher().verify_password(b"wrong", &parsed).is_err());
        let theirs = library_hash(b"SecurePass123!");
        assert!(verify("SecurePass123!", &theirs, &mut memory));
        assert!(!verify("wrong", &theirs, &mut memory));
    }

    #[test]
    fn hashes_at_other_parameters_still_verify() {
        let weaker = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let old = argon2::password_hash::PasswordHasher::hash_password(&weaker, b"SecurePass123!")
            .unwrap()
            .to_string();
        let mut memory = HashMemory::new();
        assert!(verify("SecurePass123!", &old, &mut memory));
        assert!(!verify("SecurePass124!", &old, &mut memory));
    }
}
