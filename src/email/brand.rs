//! Who every email speaks for: the product, where its links point (`APP_URL` only), the sender's
//! name, the postal address of the footer, and the key that signs unsubscribe links.

use super::unsubscribe;

/// The sender's identity as the templates show it. Built once from the settings (`app.rs`);
/// the [`Mailer`](super::Mailer) hands it to whoever composes an email.
#[derive(Clone)]
pub struct Brand {
    /// `APP_URL` without a trailing slash: every link of every email starts with it.
    pub app_url: String,
    /// "onboard".
    pub product_name: String,
    /// `SENDGRID_FROM_NAME`: the name emails are signed with.
    pub from_name: String,
    /// `EMAIL_POSTAL_ADDRESS`: the sender's postal address, in every footer.
    pub postal_address: String,
    /// `HMAC-SHA256(JWT_SECRET, "onboard unsubscribe v1")` ([`unsubscribe::derive_key`]).
    unsubscribe_key: [u8; 32],
}

impl std::fmt::Debug for Brand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brand")
            .field("app_url", &self.app_url)
            .field("product_name", &self.product_name)
            .field("from_name", &self.from_name)
            .field("postal_address", &self.postal_address)
            .field("unsubscribe_key", &"[redacted]")
            .finish()
    }
}

impl Brand {
    /// The product's name in every email.
    pub const PRODUCT_NAME: &'static str = "onboard";

    /// A brand whose unsubscribe key is derived from `secret` (`JWT_SECRET`).
    pub fn new(app_url: &str, from_name: &str, postal_address: &str, secret: &[u8]) -> Self {
        Self {
            app_url: app_url.trim_end_matches('/').to_string(),
            product_name: Self::PRODUCT_NAME.to_string(),
            from_name: from_name.to_string(),
            postal_address: postal_address.to_string(),
            unsubscribe_key: unsubscribe::derive_key(secret),
        }
    }

    /// The brand of the built-in development settings.
    pub fn development() -> Self {
        use crate::config::{DEV_JWT_SECRET, DEV_POSTAL_ADDRESS};
        Self::new(
            "http://127.0.0.1:8000",
            "Onboard",
            DEV_POSTAL_ADDRESS,
            DEV_JWT_SECRET.as_bytes(),
        )
    }

    /// `{APP_URL}/{path}`.
    pub fn link(&self, path: &str) -> String {
        format!("{}/{}", self.app_url, path.trim_start_matches('/'))
    }

    /// The key [`unsubscribe::verify`] checks this brand's links with.
    pub fn unsubscribe_key(&self) -> &[u8] {
        &self.unsubscribe_key
    }

    /// `{APP_URL}/unsubscribe?token=…` for this address of this tenant.
    pub fn unsubscribe_url(&self, tenant_id: &str, email: &str) -> String {
        self.link(&format!(
            "unsubscribe?token={}",
            unsubscribe::token(&self.unsubscribe_key, tenant_id, email)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_under_app_url_and_the_key_stays_out_of_debug() {
        let b = Brand::new(
            "https://app.example/",
            "Acme",
            "1 Road",
            b"secret-secret-secret",
        );
        assert_eq!(b.link("docs"), "https://app.example/docs");
        assert_eq!(b.link("/account"), "https://app.example/account");
        let url = b.unsubscribe_url("tenant_1", "a@example.com");
        let token = url
            .strip_prefix("https://app.example/unsubscribe?token=")
            .unwrap();
        let who = unsubscribe::verify(b.unsubscribe_key(), token).unwrap();
        assert_eq!(
            (who.tenant_id.as_str(), who.email.as_str()),
            ("tenant_1", "a@example.com")
        );
        assert!(format!("{b:?}").contains("[redacted]"));
    }
}
