//! Client certificates per request, as ingress-nginx answers and forwards them.
//!
//! Right after a handshake that asked for a certificate, [`verify`] checks the chain
//! against the host's CA (`WebPkiClientVerifier`: expiry, CRLs, purpose) and
//! `auth-tls-verify-depth`, and records a [`PeerCert`] in the TLS digest. Per request,
//! [`check`] answers as nginx: with `on`, no certificate or a bad one is 400 (or a 302
//! to `auth-tls-error-page`); with `optional`, a bad one is 400 and none passes; with
//! `optional_no_ca`, a certificate from an unknown issuer passes too; a policy whose
//! Secret is broken is 403; `auth-tls-match-cn` not matching the subject DN is 403. A
//! request for a client-auth host on a connection verified for another host or for
//! none (the SNI named another host) is 421, as nginx's "different server name" check.
//! [`upstream_headers`] sets `ssl-client-verify` (`SUCCESS`, `NONE`, `FAILED:reason`
//! with OpenSSL's wording), `ssl-client-subject-dn`, `ssl-client-issuer-dn` (RFC 2253,
//! as nginx's `$ssl_client_s_dn`) and with `auth-tls-pass-certificate-to-upstream`
//! `ssl-client-cert` (the URL-encoded PEM), and drops any the client sent.
//!
//! Plain-HTTP requests to a client-auth host are not verified (nginx has no certificate
//! there either); its https redirect applies first, and `auth-tls-match-cn` still
//! refuses them (an empty DN), as nginx's server-level check does.

use std::fmt::Write as _;

use base64::Engine as _;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use rustls::CertificateError as CE;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::routing::{ClientAuth, RoutingTable, Trust, VerifyClient};

/// The headers ingress-nginx sets for a client-auth host.
const VERIFY: &str = "ssl-client-verify";
const SUBJECT: &str = "ssl-client-subject-dn";
const ISSUER: &str = "ssl-client-issuer-dn";
const CERT: &str = "ssl-client-cert";

/// What the handshake's certificate was found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// No certificate was sent.
    None,
    /// `ssl-client-verify`'s `FAILED:` reason; `unknown_issuer` failures pass with
    /// `optional_no_ca`.
    Failed {
        reason: &'static str,
        unknown_issuer: bool,
    },
}

/// A connection's client certificate, verified under one policy.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The [`ClientAuth::id`] it was verified under.
    pub policy: u64,
    pub verdict: Verdict,
    pub subject_dn: String,
    pub issuer_dn: String,
    /// The leaf certificate (for `ssl-client-cert`).
    pub der: Vec<u8>,
}

impl Verdict {
    /// The `ssl-client-verify` value.
    pub fn header(&self) -> String {
        match self {
            Verdict::Success => "SUCCESS".into(),
            Verdict::None => "NONE".into(),
            Verdict::Failed { reason, .. } => format!("FAILED:{reason}"),
        }
    }
}

/// Verifies the chain a client presented (`None`: no certificate) under `auth`.
pub fn verify(
    auth: &ClientAuth,
    trust: &Trust,
    chain: Option<&[CertificateDer<'static>]>,
) -> PeerCert {
    let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
        return PeerCert {
            policy: auth.id,
            verdict: Verdict::None,
            subject_dn: String::new(),
            issuer_dn: String::new(),
            der: Vec::new(),
        };
    };
    let now = UnixTime::now();
    let mut verdict = match trust.verifier.verify_client_cert(leaf, intermediates, now) {
        Ok(_) => Verdict::Success,
        Err(e) => failure(&e),
    };
    // Only a chain with more intermediates than allowed can be too long.
    if verdict == Verdict::Success && intermediates.len() > auth.depth {
        verdict = depth_check(auth.depth, trust, leaf, intermediates, now);
    }
    let (subject_dn, issuer_dn) = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, c)) => (rfc2253(c.subject()), rfc2253(c.issuer())),
        Err(_) => (String::new(), String::new()),
    };
    PeerCert {
        policy: auth.id,
        verdict,
        subject_dn,
        issuer_dn,
        der: leaf.as_ref().to_vec(),
    }
}

/// OpenSSL's words for a verification failure (what nginx puts after `FAILED:`).
fn failure(e: &rustls::Error) -> Verdict {
    let reason = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CE::Expired | CE::ExpiredContext { .. } => "certificate has expired",
            CE::NotValidYet | CE::NotValidYetContext { .. } => "certificate is not yet valid",
            CE::Revoked => "certificate revoked",
            CE::UnknownIssuer => "unable to get local issuer certificate",
            CE::BadSignature => "certificate signature failure",
            CE::UnknownRevocationStatus => "unable to get certificate CRL",
            CE::ExpiredRevocationList | CE::ExpiredRevocationListContext { .. } => {
                "CRL has expired"
            }
            CE::InvalidPurpose | CE::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose"
            }
            _ => "certificate verify failed",
        },
        _ => "certificate verify failed",
    };
    Verdict::Failed {
        reason,
        unknown_issuer: matches!(e, rustls::Error::InvalidCertificate(CE::UnknownIssuer)),
    }
}

/// `auth-tls-verify-depth`: some path to the CA must have at most `depth`
/// intermediates (the CRLs were checked by the verifier already).
fn depth_check(
    depth: usize,
    trust: &Trust,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Verdict {
    let too_long = Verdict::Failed {
        reason: "certificate chain too long",
        unknown_issuer: false,
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return too_long;
    };
    let short_enough = |p: &webpki::VerifiedPath<'_>| {
        if p.intermediate_certificates().count() > depth {
            Err(webpki::Error::MaximumPathDepthExceeded)
        } else {
            Ok(())
        }
    };
    let verified = cert.verify_for_usage(
        crate::routing::certs::crypto_provider()
            .signature_verification_algorithms
            .all,
        &trust.roots.roots,
        intermediates,
        now,
        webpki::KeyUsage::client_auth(),
        None,
        Some(&short_enough),
    );
    match verified {
        Ok(_) => Verdict::Success,
        Err(_) => too_long,
    }
}

/// A distinguished name as nginx's `$ssl_client_s_dn` (RFC 2253: last RDN first,
/// `,` between RDNs, `+` within one, special characters escaped).
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            let short = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "street",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.5" => "serialNumber",
                "2.5.4.4" => "SN",
                "2.5.4.42" => "GN",
                "2.5.4.12" => "title",
                "1.2.840.113549.1.9.1" => "emailAddress",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                other => other,
            };
            out.push_str(short);
            out.push('=');
            match atv.as_str() {
                Ok(v) => escape_dn_value(v, &mut out),
                // Not a string type: the DER as hex, as RFC 2253 does.
                Err(_) => {
                    out.push('#');
                    for b in atv.attr_value().data.iter() {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

fn escape_dn_value(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(out, "\\{byte:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// nginx's `$ssl_client_escaped_cert`: the PEM, URL-encoded (all but `A-Za-z0-9-._~`).
pub fn escaped_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The connection's verified certificate, if the handshake asked for one.
fn peer(session: &Session) -> Option<&PeerCert> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<PeerCert>()
}

/// What a request to a client-auth host is answered instead of being served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Status(u16),
    /// `auth-tls-error-page`: 302 there.
    Redirect(Box<str>),
}

/// The answer for a request to `host` (its `Host`), if client certificates refuse it.
pub fn check(session: &Session, table: &RoutingTable, host: &str, tls: bool) -> Option<Refusal> {
    let auth = table.client_auth.lookup(host)?;
    decide(auth, tls, peer(session))
}

/// [`check`] without the session.
fn decide(auth: &ClientAuth, tls: bool, peer: Option<&PeerCert>) -> Option<Refusal> {
    if auth.trust.is_err() {
        return Some(Refusal::Status(403));
    }
    let peer = peer.filter(|p| p.policy == auth.id);
    if tls && auth.mode.asks() {
        let Some(p) = peer else {
            return Some(Refusal::Status(421));
        };
        let bad = match (&p.verdict, auth.mode) {
            (Verdict::Success, _) => false,
            (Verdict::None, mode) => mode == VerifyClient::On,
            (Verdict::Failed { unknown_issuer, .. }, mode) => {
                !(mode == VerifyClient::OptionalNoCa && *unknown_issuer)
            }
        };
        if bad {
            return Some(match &auth.error_page {
                Some(page) => Refusal::Redirect(page.clone()),
                None => Refusal::Status(400),
            });
        }
    }
    if let Some(re) = &auth.match_cn {
        let dn = peer.filter(|_| tls).map_or("", |p| p.subject_dn.as_str());
        if !re.is_match(dn) {
            return Some(Refusal::Status(403));
        }
    }
    None
}

/// ingress-nginx's `ssl-client-*` request headers for a client-auth host; the
/// client's own values never pass.
pub fn upstream_headers(
    session: &Session,
    table: &RoutingTable,
    host: &str,
    tls: bool,
    upstream: &mut RequestHeader,
) -> pingora::Result<()> {
    let Some(auth) = table.client_auth.lookup(host) else {
        return Ok(());
    };
    for name in [VERIFY, SUBJECT, ISSUER, CERT] {
        upstream.remove_header(name);
    }
    if !tls {
        return Ok(());
    }
    let peer = peer(session).filter(|p| p.policy == auth.id);
    let verify = peer.map_or_else(|| Verdict::None.header(), |p| p.verdict.header());
    upstream.insert_header(VERIFY, verify)?;
    let Some(p) = peer else {
        return Ok(());
    };
    for (name, value) in [(SUBJECT, &p.subject_dn), (ISSUER, &p.issuer_dn)] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            if !value.is_empty() {
                upstream.insert_header(name, v)?;
            }
        }
    }
    if auth.pass_certificate && !p.der.is_empty() {
        upstream.insert_header(CERT, escaped_pem(&p.der))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn trust_of(root: &CertificateDer<'static>) -> Arc<Trust> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            crate::routing::certs::crypto_provider(),
        )
        .build()
        .unwrap();
        Arc::new(Trust { verifier, roots })
    }

    fn auth(mode: VerifyClient, broken: bool, match_cn: Option<&str>) -> ClientAuth {
        let trust = if broken {
            Err("no CA".into())
        } else {
            let ca = rcgen::CertificateParams::new(vec![])
                .unwrap()
                .self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap();
            Ok(trust_of(ca.der()))
        };
        ClientAuth {
            mode,
            depth: 1,
            error_page: None,
            pass_certificate: false,
            match_cn: match_cn.map(|r| regex::Regex::new(r).unwrap()),
            trust,
            id: 7,
        }
    }

    fn peer(verdict: Verdict, dn: &str) -> PeerCert {
        PeerCert {
            policy: 7,
            verdict,
            subject_dn: dn.into(),
            issuer_dn: String::new(),
            der: vec![],
        }
    }

    #[test]
    fn answers_as_nginx() {
        use VerifyClient::*;
        let ok = peer(Verdict::Success, "CN=alice,O=Acme");
        let none = peer(Verdict::None, "");
        let unknown = peer(
            Verdict::Failed {
                reason: "unable to get local issuer certificate",
                unknown_issuer: true,
            },
            "CN=mallory",
        );
        let expired = peer(
            Verdict::Failed {
                reason: "certificate has expired",
                unknown_issuer: false,
            },
            "CN=old",
        );
        let s = |c| Some(Refusal::Status(c));
        let on = auth(On, false, None);
        assert_eq!(decide(&on, true, Some(&ok)), None);
        assert_eq!(decide(&on, true, Some(&none)), s(400));
        assert_eq!(decide(&on, true, Some(&expired)), s(400));
        assert_eq!(decide(&on, true, None), s(421), "verified for another host");
        let mut other = ok.clone();
        other.policy = 8;
        assert_eq!(decide(&on, true, Some(&other)), s(421));
        let opt = auth(Optional, false, None);
        assert_eq!(decide(&opt, true, Some(&none)), None);
        assert_eq!(decide(&opt, true, Some(&unknown)), s(400));
        let no_ca = auth(OptionalNoCa, false, None);
        assert_eq!(decide(&no_ca, true, Some(&unknown)), None);
        assert_eq!(decide(&no_ca, true, Some(&expired)), s(400));
        assert_eq!(decide(&auth(On, true, None), true, Some(&ok)), s(403));
        assert_eq!(decide(&auth(On, true, None), false, None), s(403));
        let cn = auth(On, false, Some("CN=alice"));
        assert_eq!(decide(&cn, true, Some(&ok)), None);
        assert_eq!(
            decide(&cn, true, Some(&peer(Verdict::Success, "CN=bob"))),
            s(403)
        );
        assert_eq!(decide(&cn, false, None), s(403), "no DN over plain HTTP");
        assert_eq!(decide(&on, false, None), None, "plain HTTP is not verified");
        let mut page = auth(On, false, None);
        page.error_page = Some("https://help.example/".into());
        assert_eq!(
            decide(&page, true, Some(&none)),
            Some(Refusal::Redirect("https://help.example/".into()))
        );
    }

    #[test]
    fn verify_depth_counts_intermediates() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let ca = |cn: &str| {
            let mut p = CertificateParams::new(vec![]).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            p
        };
        let leaf_of = |issuer: &rcgen::Issuer<'_, KeyPair>| {
            let mut p = CertificateParams::new(vec![]).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, "leaf");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            p.signed_by(&key, issuer).unwrap().der().clone()
        };
        let root = CertifiedIssuer::self_signed(ca("root"), KeyPair::generate().unwrap()).unwrap();
        let int1 =
            CertifiedIssuer::signed_by(ca("int1"), KeyPair::generate().unwrap(), &root).unwrap();
        let int2 =
            CertifiedIssuer::signed_by(ca("int2"), KeyPair::generate().unwrap(), &int1).unwrap();
        let trust = trust_of(root.der());
        let mut a = auth(VerifyClient::On, false, None);
        a.trust = Ok(trust.clone());
        let one = vec![leaf_of(&int1), int1.der().clone()];
        let two = vec![leaf_of(&int2), int2.der().clone(), int1.der().clone()];
        // ingress-nginx's default depth 1: one intermediate, as OpenSSL counts.
        assert_eq!(verify(&a, &trust, Some(&one)).verdict, Verdict::Success);
        let too_long = verify(&a, &trust, Some(&two)).verdict;
        assert_eq!(too_long.header(), "FAILED:certificate chain too long");
        a.depth = 2;
        assert_eq!(verify(&a, &trust, Some(&two)).verdict, Verdict::Success);
        let p = verify(&a, &trust, Some(&two));
        assert_eq!(
            (p.subject_dn.as_str(), p.issuer_dn.as_str()),
            ("CN=leaf", "CN=int2")
        );
        assert_eq!(verify(&a, &trust, None).verdict, Verdict::None);
    }

    #[test]
    fn dn_and_pem_formats() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "US");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        assert_eq!(rfc2253(c.subject()), "CN=alice,O=Acme\\, Inc.,C=US");
        let e = escaped_pem(cert.der());
        assert!(e.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{e}");
        assert!(e.ends_with("-----END%20CERTIFICATE-----%0A"));
        assert!(!e.contains('+') && !e.contains('/') && !e.contains('='));
    }
}
