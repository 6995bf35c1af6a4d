//! Password hashing with argon2id at OWASP's recommended parameters.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};

use super::Password;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("the argon2 parameters are constants that argon2 accepts");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string with a fresh random salt. CPU-heavy (tens of ms): call
/// it on a blocking thread.
pub fn hash(password: &Password) -> String {
    hash_bytes(password.expose().as_bytes())
}

/// The same hash over raw bytes; the benchmark uses it as the floor of a signup's cost.
pub fn hash_bytes(password: &[u8]) -> String {
    hasher()
        .hash_password(password)
        .expect("hashing with valid parameters and a generated salt cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC string; a malformed stored hash never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_salted() {
        let p = Password::parse("SecurePass123!".into()).unwrap();
        let a = hash(&p);
        let b = hash(&p);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("SecurePass123!"));
    }

    #[test]
    fn verifies_right_password_only() {
        let p = Password::parse("SecurePass123!".into()).unwrap();
        let h = hash(&p);
        assert!(verify("SecurePass123!", &h));
        assert!(!verify("SecurePass124!", &h));
        assert!(!verify("SecurePass123!", "not-a-hash"));
    }
}
