//! Authentication settings of one Ingress, in the immutable form the proxy reads: HTTP
//! basic auth (`auth-type: basic`) and external auth (`auth-url`).
//!
//! Owns the user → password-hash map (every hash's format recognised and decoded once,
//! at translation), password verification as a pure function, and the URL templates of
//! `auth-url` / `auth-signin` / `auth-request-redirect` (parsed and expanded by
//! `routing::template` in its URL dialect). *When* a hash is checked (inline, or on the blocking pool for the slow ones), the
//! cache of verified credentials and the subrequest itself belong to `proxy::auth`.
//! The user map grows with objects (the Secret's entries, which the API server caps at
//! 1 MiB per Secret), never with traffic.
//!
//! Hash formats are the ones nginx accepts (its own `ngx_crypt` plus the C library's
//! crypt(3) on the ingress-nginx image): `$apr1$` (Apache MD5), `$1$` (MD5-crypt),
//! `$2a$`/`$2b$`/`$2y$` (bcrypt), `$5$`/`$6$` (SHA-256/512-crypt, what `htpasswd -2/-5`
//! and `openssl passwd -5/-6` write), `{SHA}` (SHA-1, base64), `{SSHA}` (salted SHA-1),
//! `{PLAIN}`, and traditional DES crypt (13 characters; as with crypt(3), only the first
//! 8 bytes of the password count). Refused, with a warning naming the user: anything
//! else, bcrypt costs above 17 (htpasswd's maximum) and SHA-crypt `rounds=` above
//! 1,000,000, because one such hash would hold a CPU for seconds on every request.

use std::collections::HashMap;

use base64::Engine as _;

use super::template::{arg, Template};

/// `auth-type: basic`: who may pass, and the realm sent with 401.
pub struct BasicAuth {
    /// `auth-realm` (empty by default, as in ingress-nginx: `Basic realm=""`).
    pub realm: Box<str>,
    /// `namespace/name` of the Secret the users come from (for logs).
    pub secret: Box<str>,
    /// User name → password hash. The first entry of a user wins, as in nginx.
    pub users: HashMap<Box<str>, PasswordHash>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        let mut users: Vec<_> = self.users.keys().collect();
        users.sort();
        f.debug_struct("BasicAuth")
            .field("realm", &self.realm)
            .field("secret", &self.secret)
            .field("users", &users)
            .finish()
    }
}

impl BasicAuth {
    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm)
    }
}

/// The hash formats, by name (fixtures, warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Plain,
    Sha1,
    Ssha,
    Apr1,
    Md5Crypt,
    Bcrypt,
    Sha256Crypt,
    Sha512Crypt,
    Des,
}

impl HashKind {
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Plain => "plain",
            HashKind::Sha1 => "sha1",
            HashKind::Ssha => "ssha",
            HashKind::Apr1 => "apr1",
            HashKind::Md5Crypt => "md5-crypt",
            HashKind::Bcrypt => "bcrypt",
            HashKind::Sha256Crypt => "sha256-crypt",
            HashKind::Sha512Crypt => "sha512-crypt",
            HashKind::Des => "des-crypt",
        }
    }
}

/// One user's password hash, decoded as far as verification allows.
#[derive(Clone)]
pub enum PasswordHash {
    /// `{PLAIN}password`.
    Plain(Box<[u8]>),
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{SSHA}base64(sha1(password + salt) + salt)`.
    Ssha { digest: [u8; 20], salt: Box<[u8]> },
    /// `$apr1$salt$hash` / `$1$salt$hash`: recomputed here and compared whole.
    Md5 {
        kind: HashKind,
        salt: Box<str>,
        full: Box<str>,
    },
    /// bcrypt, SHA-crypt, DES: the whole string, recomputed by `pwhash`.
    Crypt { kind: HashKind, full: Box<str> },
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.kind().name())
    }
}

/// crypt(3)'s base-64 alphabet.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt64(s: &str) -> bool {
    s.bytes().all(|b| ITOA64.contains(&b))
}

/// Base64 as nginx's `ngx_decode_base64` reads it: standard alphabet, padding optional.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::NO_PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s.trim()).ok()
}

/// Highest bcrypt cost accepted (htpasswd's own limit); 2^17 rounds take seconds.
pub const MAX_BCRYPT_COST: u32 = 17;
/// Highest SHA-crypt `rounds=` accepted (the default is 5,000).
pub const MAX_SHA_CRYPT_ROUNDS: u64 = 1_000_000;

/// Why an htpasswd entry's hash was refused. The text names the format and what is
/// wrong with it, never the hash itself (it ends up in a warning and an Event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `{SHA}` or `{SSHA}` followed by something that is not base64.
    #[error("{0} hash is not base64")]
    NotBase64(&'static str),
    #[error("{{SHA}} hash is not 20 bytes (SHA-1)")]
    Sha1Length,
    #[error("{{SSHA}} hash has no salt after its 20-byte digest")]
    SshaWithoutSalt,
    #[error("MD5 hash has no $ after its salt")]
    Md5WithoutSalt,
    /// The format was recognised by its prefix, but the rest is not that format.
    #[error("malformed {} hash", .0.name())]
    Malformed(HashKind),
    #[error("malformed bcrypt hash (no cost)")]
    BcryptWithoutCost,
    #[error("bcrypt cost {0} is outside 4..={MAX_BCRYPT_COST}")]
    BcryptCost(u32),
    #[error("malformed SHA-crypt rounds")]
    ShaCryptRounds,
    #[error("SHA-crypt rounds {0} is above {MAX_SHA_CRYPT_ROUNDS}")]
    ShaCryptTooManyRounds(u64),
    #[error("SHA-crypt hash has no $ after its salt")]
    ShaCryptWithoutSalt,
    #[error("not a supported hash format (bcrypt, apr1, MD5-crypt, SHA-256/512-crypt, {{SHA}}, {{SSHA}}, {{PLAIN}} or DES crypt)")]
    Unsupported,
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl PasswordHash {
    /// Recognises an htpasswd hash. The error says what is wrong, never the hash.
    pub fn parse(s: &str) -> Result<PasswordHash> {
        if let Some(p) = s.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(p.as_bytes().into()));
        }
        if let Some(b) = s.strip_prefix("{SHA}") {
            let d = decode_base64(b).ok_or(Error::NotBase64("{SHA}"))?;
            let digest: [u8; 20] = d.try_into().map_err(|_| Error::Sha1Length)?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if let Some(b) = s.strip_prefix("{SSHA}") {
            let d = decode_base64(b).ok_or(Error::NotBase64("{SSHA}"))?;
            if d.len() <= 20 {
                return Err(Error::SshaWithoutSalt);
            }
            let mut digest = [0; 20];
            digest.copy_from_slice(&d[..20]);
            return Ok(PasswordHash::Ssha {
                digest,
                salt: d[20..].into(),
            });
        }
        for (magic, kind) in [("$apr1$", HashKind::Apr1), ("$1$", HashKind::Md5Crypt)] {
            if let Some(rest) = s.strip_prefix(magic) {
                let (salt, hash) = rest.split_once('$').ok_or(Error::Md5WithoutSalt)?;
                if salt.len() > 8 || !is_crypt64(salt) || hash.len() != 22 || !is_crypt64(hash) {
                    return Err(Error::Malformed(kind));
                }
                return Ok(PasswordHash::Md5 {
                    kind,
                    salt: salt.into(),
                    full: s.into(),
                });
            }
        }
        if ["$2a$", "$2b$", "$2y$"].iter().any(|m| s.starts_with(m)) {
            let cost: u32 = s
                .get(4..6)
                .and_then(|c| c.parse().ok())
                .ok_or(Error::BcryptWithoutCost)?;
            if s.len() != 60 || s.as_bytes()[6] != b'$' || !is_crypt64(&s[7..]) {
                return Err(Error::Malformed(HashKind::Bcrypt));
            }
            if !(4..=MAX_BCRYPT_COST).contains(&cost) {
                return Err(Error::BcryptCost(cost));
            }
            return Ok(PasswordHash::Crypt {
                kind: HashKind::Bcrypt,
                full: s.into(),
            });
        }
        for (magic, kind, len) in [
            ("$5$", HashKind::Sha256Crypt, 43),
            ("$6$", HashKind::Sha512Crypt, 86),
        ] {
            if let Some(mut rest) = s.strip_prefix(magic) {
                if let Some(r) = rest.strip_prefix("rounds=") {
                    let (n, tail) = r.split_once('$').ok_or(Error::ShaCryptRounds)?;
                    let n: u64 = n.parse().map_err(|_| Error::ShaCryptRounds)?;
                    if n > MAX_SHA_CRYPT_ROUNDS {
                        return Err(Error::ShaCryptTooManyRounds(n));
                    }
                    rest = tail;
                }
                let (salt, hash) = rest.rsplit_once('$').ok_or(Error::ShaCryptWithoutSalt)?;
                if salt.len() > 16 || salt.contains('$') || hash.len() != len || !is_crypt64(hash) {
                    return Err(Error::Malformed(kind));
                }
                return Ok(PasswordHash::Crypt {
                    kind,
                    full: s.into(),
                });
            }
        }
        if s.len() == 13 && is_crypt64(s) {
            return Ok(PasswordHash::Crypt {
                kind: HashKind::Des,
                full: s.into(),
            });
        }
        Err(Error::Unsupported)
    }

    pub fn kind(&self) -> HashKind {
        match self {
            PasswordHash::Plain(_) => HashKind::Plain,
            PasswordHash::Sha1(_) => HashKind::Sha1,
            PasswordHash::Ssha { .. } => HashKind::Ssha,
            PasswordHash::Md5 { kind, .. } | PasswordHash::Crypt { kind, .. } => *kind,
        }
    }

    /// Deliberately slow formats (milliseconds to seconds): checked off the event loop.
    pub fn is_slow(&self) -> bool {
        matches!(
            self.kind(),
            HashKind::Bcrypt | HashKind::Sha256Crypt | HashKind::Sha512Crypt
        )
    }

    /// The hash text itself (as a cache key ingredient: a changed hash never matches).
    pub fn identity(&self) -> Vec<u8> {
        match self {
            PasswordHash::Plain(p) => [b"{PLAIN}".as_slice(), p].concat(),
            PasswordHash::Sha1(d) => [b"{SHA}".as_slice(), d].concat(),
            PasswordHash::Ssha { digest, salt } => [b"{SSHA}".as_slice(), digest, salt].concat(),
            PasswordHash::Md5 { full, .. } | PasswordHash::Crypt { full, .. } => {
                full.as_bytes().to_vec()
            }
        }
    }

    /// Whether `password` matches. Comparisons take the same time whatever matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Plain(p) => ct_eq(p, password),
            PasswordHash::Sha1(d) => ct_eq(&sha1(&[password]), d),
            PasswordHash::Ssha { digest, salt } => ct_eq(&sha1(&[password, salt]), digest),
            PasswordHash::Md5 { kind, salt, full } => {
                let magic = if *kind == HashKind::Apr1 {
                    "$apr1$"
                } else {
                    "$1$"
                };
                ct_eq(md5_crypt(password, magic, salt).as_bytes(), full.as_bytes())
            }
            PasswordHash::Crypt { full, .. } => pwhash::unix::verify(password, full),
        }
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Constant-time equality for equal lengths (a length mismatch returns at once, as
/// `subtle`'s does; lengths are those of hashes, or of a `{PLAIN}` password).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// The MD5-crypt family (Poul-Henning Kamp's `$1$`, Apache's `$apr1$`: only the magic
/// differs): 1,000 rounds of MD5, encoded in crypt's base 64. Returns the whole hash.
pub fn md5_crypt(password: &[u8], magic: &str, salt: &str) -> String {
    use md5::{Digest, Md5};
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(std::str::from_utf8(salt).unwrap_or(""));
    out.push('$');
    let f = |i: usize| u32::from(fin[i]);
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    to64((f(0) << 16) | (f(6) << 8) | f(12), 4);
    to64((f(1) << 16) | (f(7) << 8) | f(13), 4);
    to64((f(2) << 16) | (f(8) << 8) | f(14), 4);
    to64((f(3) << 16) | (f(9) << 8) | f(15), 4);
    to64((f(4) << 16) | (f(10) << 8) | f(5), 4);
    to64(f(11), 2);
    out
}

/// `auth-url` and its companions: a subrequest decides whether a request may pass.
#[derive(Debug)]
pub struct ExternalAuth {
    /// `auth-url`, with nginx variables expanded per request.
    pub url: Template,
    /// `auth-method` (GET by default).
    pub method: http::Method,
    /// `auth-signin` with `<auth-signin-redirect-param>=$pass_access_scheme://$http_host$escaped_request_uri`
    /// appended as ingress-nginx does (unless the URL already carries that parameter).
    pub signin: Option<Template>,
    /// `auth-response-headers`: copied from a 2xx auth response to the upstream request.
    pub response_headers: Vec<http::HeaderName>,
    /// `auth-request-redirect`: sent as `X-Auth-Request-Redirect` (default `$request_uri`).
    pub request_redirect: Option<Template>,
    /// `auth-always-set-cookie`: the auth response's `Set-Cookie` also on error responses.
    pub always_set_cookie: bool,
}

/// ingress-nginx's `buildAuthSignURL`: appends `<param>=$pass_access_scheme://$http_host$escaped_request_uri`
/// to the sign-in URL unless its query already has that parameter.
pub fn signin_with_redirect(signin: &str, param: &str) -> String {
    let q = signin
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""));
    let redirect = format!("{param}=$pass_access_scheme://$http_host$escaped_request_uri");
    match q {
        None | Some("") => format!("{}?{redirect}", signin.trim_end_matches('?')),
        Some(q) if arg(q, param).is_some_and(|v| !v.is_empty()) => signin.to_string(),
        Some(_) => format!("{signin}&{redirect}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_vectors() {
        // openssl passwd -1 -salt saltsalt password / -apr1 (and htpasswd-verify's doc vector).
        assert_eq!(
            md5_crypt(b"password", "$apr1$", "RandSalt"),
            "$apr1$RandSalt$PgCXHRrkpSt4cbyC2C6bm/"
        );
        let h = PasswordHash::parse("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00").unwrap();
        assert!(h.verify(b"password"));
        assert!(!h.verify(b"passwordx"));
        // $1$ agrees with pwhash's independent implementation.
        let ours = md5_crypt(b"a longer password, over 16 bytes", "$1$", "5pZSV9va");
        assert!(pwhash::unix::verify(
            "a longer password, over 16 bytes",
            &ours
        ));
        assert!(PasswordHash::parse(&ours)
            .unwrap()
            .verify(b"a longer password, over 16 bytes"));
    }

    #[test]
    fn hash_formats() {
        let kind = |s: &str| PasswordHash::parse(s).map(|h| h.kind());
        assert_eq!(kind("{PLAIN}secret"), Ok(HashKind::Plain));
        assert!(PasswordHash::parse("{PLAIN}secret")
            .unwrap()
            .verify(b"secret"));
        // htpasswd -s: sha1("password").
        let sha = PasswordHash::parse("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=").unwrap();
        assert!(sha.verify(b"password"));
        assert!(!sha.verify(b"Password"));
        assert!(kind("{SHA}nope").is_err());
        assert_eq!(
            kind("$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe"),
            Ok(HashKind::Bcrypt)
        );
        assert!(kind("$2y$18$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe").is_err());
        assert!(kind("$2y$05$short").is_err());
        assert_eq!(kind("aZGJuE6EXrjEE"), Ok(HashKind::Des));
        assert!(PasswordHash::parse("aZGJuE6EXrjEE")
            .unwrap()
            .verify(b"test"));
        assert!(kind("$6$rounds=99999999$salt$x").is_err());
        assert!(kind("$7$whatever").is_err());
        assert!(kind("plaintext").is_err());
        // Never the hash in an error.
        let e = PasswordHash::parse("$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFp")
            .unwrap_err();
        assert!(!e.to_string().contains("bvIG6"), "{e}");
    }

    #[test]
    fn signin_redirect_param_as_ingress_nginx() {
        assert_eq!(
            signin_with_redirect("https://auth.example/start", "rd"),
            "https://auth.example/start?rd=$pass_access_scheme://$http_host$escaped_request_uri"
        );
        assert_eq!(
            signin_with_redirect("https://auth.example/start?x=1", "rd"),
            "https://auth.example/start?x=1&rd=$pass_access_scheme://$http_host$escaped_request_uri"
        );
        assert_eq!(
            signin_with_redirect("https://$host/oauth2/start?rd=$escaped_request_uri", "rd"),
            "https://$host/oauth2/start?rd=$escaped_request_uri"
        );
        assert_eq!(
            signin_with_redirect("https://auth.example/start", "return_to"),
            "https://auth.example/start?return_to=$pass_access_scheme://$http_host$escaped_request_uri"
        );
    }
}
