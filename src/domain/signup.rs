//! Signup input, parsed into domain types ("parse, don't validate").

use secrecy::{ExposeSecret, SecretString};

use super::{FieldError, Plan};

/// A syntactically valid email address. Keeps the address as typed for display and a
/// lower-cased form that decides uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    original: String,
    normalized: String,
}

/// RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255 octets, and a path of at most 256
/// octets including the angle brackets, so an address of at most 254.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;
const MAX_ADDRESS: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = |msg: &str| FieldError::new("email", "invalid_email", msg.to_string());
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("email is required"));
        }
        if s.len() > MAX_ADDRESS {
            return Err(err("email is longer than 254 characters"));
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("email must contain exactly one '@'"));
        };
        if local.is_empty() || local.len() > MAX_LOCAL {
            return Err(err("the part before '@' must be 1 to 64 characters"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err("the part before '@' has a misplaced '.'"));
        }
        let local_ok = local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        if !local_ok {
            return Err(err(
                "the part before '@' contains a character not allowed in email addresses",
            ));
        }
        if domain.is_empty() || domain.len() > MAX_DOMAIN {
            return Err(err("the domain after '@' must be 1 to 255 characters"));
        }
        if !domain.contains('.') {
            return Err(err(
                "the domain after '@' must contain a dot, e.g. example.com",
            ));
        }
        for label in domain.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(err("the domain after '@' is not a valid host name"));
            }
        }
        Ok(Self {
            original: s.to_string(),
            normalized: s.to_ascii_lowercase(),
        })
    }

    /// The address as the user typed it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The case-folded address used for uniqueness and look-ups.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// Unicode general category Cf (format characters, Unicode 15.1): invisible characters such as
/// U+202E RIGHT-TO-LEFT OVERRIDE, which can make a name display as something it is not.
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a Unicode format character (category Cf).
pub fn is_format_char(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// A company name: 1-200 characters after trimming, no control or format characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyName(String);

impl CompanyName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 {
            return Err(FieldError::new(
                "company_name",
                "invalid_company_name",
                "company_name is required",
            ));
        }
        if n > 200 {
            return Err(FieldError::new(
                "company_name",
                "invalid_company_name",
                format!("company_name must be at most 200 characters (got {n})"),
            ));
        }
        if let Some(c) = s.chars().find(|c| c.is_control() || is_format_char(*c)) {
            return Err(FieldError::new(
                "company_name",
                "invalid_company_name",
                format!(
                    "company_name must not contain control or invisible formatting characters (found U+{:04X})",
                    u32::from(c)
                ),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters. Never displayed, never logged.
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(8..=128).contains(&n) {
            return Err(FieldError::new(
                "password",
                "invalid_password",
                format!("password must be 8 to 128 characters (got {n})"),
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A signup request once every field is known to be valid.
#[derive(Debug)]
pub struct SignupInput {
    pub email: Email,
    pub company_name: CompanyName,
    pub password: Password,
    pub plan: Plan,
}

impl SignupInput {
    /// Parses the raw fields; the first invalid field (in form order) is reported.
    pub fn parse(
        email: Option<String>,
        company_name: Option<String>,
        password: Option<String>,
        plan: Option<String>,
    ) -> Result<Self, FieldError> {
        let required = |field: &'static str, code: &'static str| {
            FieldError::new(field, code, format!("{field} is required"))
        };
        let email = Email::parse(&email.ok_or_else(|| required("email", "invalid_email"))?)?;
        let company_name = CompanyName::parse(
            &company_name.ok_or_else(|| required("company_name", "invalid_company_name"))?,
        )?;
        let password =
            Password::parse(password.ok_or_else(|| required("password", "invalid_password"))?)?;
        let plan = match plan {
            None => Plan::Starter,
            Some(p) => p.parse()?,
        };
        Ok(Self {
            email,
            company_name,
            password,
            plan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_names_refuse_invisible_formatting_characters() {
        for bad in [
            "Acme\u{202E}moc.evil",
            "Ac\u{200B}me",
            "\u{FEFF}Acme",
            "Acme\u{2066}x",
            "Acme\u{E0041}",
            "Acme\u{00AD}",
        ] {
            let e = CompanyName::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_company_name", "{bad:?}");
            assert!(e.message.contains("U+"), "{}", e.message);
        }
        for good in [
            "Acme",
            "Ümlaut GmbH",
            "株式会社",
            "O'Brien & Co.",
            "Café 🚀",
        ] {
            assert!(CompanyName::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "user@example.com",
            "alice+test@example.com",
            "a.b-c_d@sub.example.co.uk",
            "  Bob@TechCorp.io ",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "plainaddress",
            "two@@example.com",
            "a@b@example.com",
            "@example.com",
            "user@",
            "user@localhost",
            "user@exa mple.com",
            "us er@example.com",
            ".user@example.com",
            "user.@example.com",
            "us..er@example.com",
            "user@-example.com",
            "user@example..com",
            "user@example.com.",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad}");
        }
    }

    #[test]
    fn normalizes_case_for_uniqueness_but_keeps_display_form() {
        let e = Email::parse("Alice@Example.COM").unwrap();
        assert_eq!(e.normalized(), "alice@example.com");
        assert_eq!(e.as_str(), "Alice@Example.COM");
    }

    #[test]
    fn local_part_of_exactly_64_is_fine() {
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
    }

    #[test]
    fn company_name_limits() {
        assert!(CompanyName::parse("  ").is_err());
        assert!(CompanyName::parse(&"x".repeat(201)).is_err());
        assert_eq!(
            CompanyName::parse(&"é".repeat(200))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
        assert_eq!(CompanyName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(CompanyName::parse("Ac\u{0}me").is_err());
    }

    #[test]
    fn password_limits() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let p = Password::parse("SecurePass123!".into()).unwrap();
        assert!(!format!("{p:?}").contains("SecurePass"));
    }

    #[test]
    fn signup_defaults_plan_to_starter_and_reports_first_bad_field() {
        let ok = SignupInput::parse(
            Some("a@example.com".into()),
            Some("Acme".into()),
            Some("SecurePass123!".into()),
            None,
        )
        .unwrap();
        assert_eq!(ok.plan, Plan::Starter);
        let err = SignupInput::parse(Some("a@example.com".into()), None, None, None).unwrap_err();
        assert_eq!(err.field, "company_name");
    }
}
