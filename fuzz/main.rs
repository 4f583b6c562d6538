//! The fuzz targets (see fuzz/README.md): one `#[test]` per target, each replaying its
//! seed corpus and kept regressions, then mutating them for `SLUICE_FUZZ_SECONDS`.
//!
//!   cargo test --test fuzz                                  # 2 s per target
//!   SLUICE_FUZZ_SECONDS=30 cargo test --release --test fuzz -- --test-threads=1   # as CI
//!   SLUICE_FUZZ_SEED=1234 cargo test --test fuzz matcher   # replay one run

mod engine;
mod matcher;
mod parsers;
mod translate;

use engine::fuzz;

#[test]
fn translate() {
    fuzz(
        "translate",
        &[
            b"nginx.ingress.kubernetes.io/",
            b"kind: Ingress\n",
            b"\n---\n",
            b"\"",
            b"$1",
            b"*.",
        ],
        translate::target,
    );
}

#[test]
fn matcher() {
    fuzz(
        "matcher",
        &[b"/", b"//", b"/..", b"%2f", b"%", b"(", b"*."],
        matcher::target,
    );
}

#[test]
fn template() {
    fuzz(
        "template",
        &[
            b"$",
            b"${",
            b"}",
            b"$http_",
            b"$cookie_",
            b"$arg_",
            b"$request_uri",
            b"\r\n",
        ],
        parsers::template,
    );
}

#[test]
fn htpasswd() {
    fuzz(
        "htpasswd",
        &[
            b"$apr1$",
            b"$1$",
            b"$2y$05$",
            b"$5$rounds=",
            b"$6$",
            b"{SHA}",
            b"{SSHA}",
            b":",
            b"\n",
        ],
        parsers::htpasswd,
    );
}

#[test]
fn proxy_protocol() {
    fuzz(
        "proxy_protocol",
        &[
            b"PROXY ",
            b"TCP4 ",
            b"TCP6 ",
            b"UNKNOWN",
            b"\r\n",
            b"\r\n\r\n\0\r\nQUIT\n",
            b"\x21\x11",
            b"\x20",
        ],
        parsers::proxy_protocol,
    );
}

#[test]
fn sni() {
    fuzz(
        "sni",
        &[
            b"\x16\x03\x01",
            b"\x16\x03\x03\x00",
            b"\x01\x00\x00",
            b"\x00\x00",
            b"\x00\x00\x00\x0b",
            b"\x15\x03\x01",
            b"example.",
        ],
        parsers::sni,
    );
}

#[test]
fn check_input() {
    fuzz(
        "check_input",
        &[
            b"\n---\n",
            b"kind: List\n",
            b"items:\n",
            b"apiVersion: v1\n",
            b"{",
            b"- ",
            b"&a",
            b"*a",
        ],
        parsers::check_input,
    );
}
