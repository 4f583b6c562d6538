//! `sluice check` through the real binary: golden reports for a corpus of realistic
//! ingress-nginx manifests (`tests/check/corpus/`), exit codes, stdin, and the flag-only
//! invocation that must keep working next to the subcommand.
//!
//! Goldens: `tests/check/golden/<case>.txt` and `<case>.json` are the exact stdout of
//! `sluice check [--output json] ARGS` run in `tests/check/` (see [`CASES`]). Each case's
//! exit code must equal the JSON's `summary.exit_code`, and the text and JSON runs must
//! agree on it.
//!
//! The reports change whenever sluice learns an annotation (other branches add keys to
//! `SUPPORTED` and `notes::DIFFERS`): regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test check` and review the diff, which is exactly the
//! user-visible change. The assertions outside the goldens check only what no new
//! annotation can change (snippets are refused, typos stay unknown, a plain Ingress is
//! clean, other classes are ignored, broken files are errors).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// (golden name, arguments after `check`), run in `tests/check/`.
const CASES: &[(&str, &[&str])] = &[
    ("app", &["corpus/app.yaml"]),
    ("cert-manager", &["corpus/cert-manager.yaml"]),
    ("canary", &["corpus/canary.yaml"]),
    ("snippets", &["corpus/snippets.yaml"]),
    ("typos", &["corpus/typos.yaml"]),
    ("bad-regex", &["corpus/bad-regex.yaml"]),
    ("kubectl-list", &["corpus/kubectl-list.yaml"]),
    // Argo CD's ssl-passthrough Ingress, with the flag that makes it apply.
    (
        "kubectl-list-passthrough",
        &["--enable-ssl-passthrough", "corpus/kubectl-list.yaml"],
    ),
    ("other-class", &["corpus/other-class.yaml"]),
    // ingress-nginx's own IngressClass in the input: not ours unless claimed.
    (
        "ingress-nginx-class",
        &["corpus/app.yaml", "extra/ingress-nginx-class.yaml"],
    ),
    (
        "ingress-nginx-class-takeover",
        &[
            "--controller-class",
            "k8s.io/ingress-nginx",
            "corpus/app.yaml",
            "extra/ingress-nginx-class.yaml",
        ],
    ),
    (
        "other-class-flags",
        &[
            "--ingress-class",
            "nginx-internal",
            "--watch-ingress-without-class",
            "corpus/other-class.yaml",
        ],
    ),
    // The controller ConfigMap: bad values and keys that behave differently.
    (
        "configmap",
        &[
            "--configmap",
            "ingress-nginx/ingress-nginx-controller",
            "corpus/kubectl-list.yaml",
            "extra/controller-configmap.yaml",
        ],
    ),
    // The whole corpus as one directory: one translation across files.
    ("corpus-dir", &["corpus"]),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check")
}

fn sluice(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.current_dir(dir())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("run sluice");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `sluice check ARGS`: (exit code, stdout).
fn check(args: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = sluice(&all, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("unexpected argument 'check'"),
        "{} is not a build with `sluice check` (another worktree's build in a shared target dir?)",
        env!("CARGO_BIN_EXE_sluice")
    );
    let code = out.status.code().expect("exited");
    (code, String::from_utf8(out.stdout).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn golden_reports() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, args) in CASES {
        let (text_code, text) = check(args, None);
        let mut json_args = vec!["--output", "json"];
        json_args.extend_from_slice(args);
        let (json_code, json_text) = check(&json_args, None);
        let doc = json(&json_text);
        assert_eq!(doc["version"], 1, "{name}");
        assert_eq!(
            doc["summary"]["exit_code"], json_code,
            "{name}: exit code and summary.exit_code differ"
        );
        assert_eq!(text_code, json_code, "{name}: text and JSON runs disagree");
        assert!(
            text.ends_with(&format!(
                "{} error{}, {} warning{}\n",
                doc["summary"]["errors"],
                if doc["summary"]["errors"] == 1 {
                    ""
                } else {
                    "s"
                },
                doc["summary"]["warnings"],
                if doc["summary"]["warnings"] == 1 {
                    ""
                } else {
                    "s"
                },
            )),
            "{name}: text summary line disagrees with the JSON:\n{text}"
        );
        for (ext, got) in [("txt", &text), ("json", &json_text)] {
            let path = dir().join(format!("golden/{name}.{ext}"));
            if update {
                std::fs::write(&path, got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if &want != got {
                failures.push(format!(
                    "{}: differs (UPDATE_GOLDEN=1 to regenerate)\n--- got:\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Outcomes that no newly supported annotation can change.
#[test]
fn exit_codes() {
    // Snippets are never executed: an error, always.
    let (code, out) = check(&["corpus/snippets.yaml"], None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused      configuration-snippet"), "{out}");
    assert!(out.contains("refused      server-snippet"), "{out}");

    // Typos are warnings, with the key they probably meant.
    let (code, out) = check(&["corpus/typos.yaml"], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unknown      rewrite-traget: not an ingress-nginx annotation; did you mean rewrite-target?"),
        "{out}"
    );
    assert!(out.contains("did you mean nginx.ingress.kubernetes.io/proxy-read-timeout?"));

    // A look-ahead path does not compile: the path is dropped, an error.
    let (code, out) = check(&["corpus/bad-regex.yaml"], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("InvalidPath: path \"/v1/(?!internal)(.*)\""),
        "{out}"
    );
    assert!(out.contains("look-around"), "{out}");

    // Other classes: not served, a warning each, with the reason.
    let (code, out) = check(&["corpus/other-class.yaml"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 Ingresses: 0 served, 3 ignored"), "{out}");
    assert!(
        out.contains("IngressClass traefik is not in the input"),
        "{out}"
    );

    // A plain Ingress is clean, even with its Service and Secret left out.
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: plain, namespace: web}\nspec:\n  ingressClassName: nginx\n  tls: [{hosts: [plain.example], secretName: plain-tls}]\n  rules:\n  - host: plain.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: plain, port: {number: 80}}}}\n",
    )
    .unwrap();
    let (code, out) = check(&[plain.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("1 Ingress: 1 served, 0 ignored; 0 errors, 0 warnings\n"),
        "{out}"
    );
}

#[test]
fn stdin_reads_the_same_as_a_file() {
    let list = std::fs::read(dir().join("corpus/kubectl-list.yaml")).unwrap();
    let (file_code, from_file) = check(&["corpus/kubectl-list.yaml"], None);
    let (code, from_stdin) = check(&["-"], Some(&list));
    assert_eq!(code, file_code);
    assert_eq!(
        from_stdin,
        from_file.replace("corpus/kubectl-list.yaml", "<stdin>")
    );
    // No argument at all: stdin too.
    let (code, no_args) = check(&[], Some(&list));
    assert_eq!(code, file_code);
    assert_eq!(no_args, from_stdin);
}

#[test]
fn broken_inputs_are_errors_and_the_rest_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, "apiVersion: v1\nkind: Service\nmetadata: [oops\n").unwrap();
    let bad_doc = tmp.path().join("bad-doc.yaml");
    std::fs::write(
        &bad_doc,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fine, namespace: a}\nspec:\n  ingressClassName: nginx\n  defaultBackend: {service: {name: s, port: {number: 80}}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken, namespace: a}\nspec: {rules: 5}\n",
    )
    .unwrap();
    let missing = tmp.path().join("missing.yaml");
    let args = [
        "--output",
        "json",
        broken.to_str().unwrap(),
        bad_doc.to_str().unwrap(),
        missing.to_str().unwrap(),
    ];
    let (code, out) = check(&args, None);
    assert_eq!(code, 2, "{out}");
    let doc = json(&out);
    let files = doc["files"].as_array().unwrap();
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not reported: {out}"))
    };
    assert_eq!(find("broken.yaml")["severity"], "error");
    // The parser reports where it gave up: the end of the unclosed flow sequence.
    assert!(find("broken.yaml")["line"].as_u64().unwrap() >= 3, "{out}");
    assert_eq!(find("bad-doc.yaml")["line"], 8);
    assert!(find("missing.yaml")["message"]
        .as_str()
        .unwrap()
        .starts_with("cannot read"));
    // The good document of the half-broken file is still checked.
    let ingresses = doc["ingresses"].as_array().unwrap();
    assert_eq!(ingresses.len(), 1, "{out}");
    assert_eq!(ingresses[0]["name"], "fine");
    assert_eq!(ingresses[0]["served"], true);

    // The same directory: files found recursively, sorted, the same problems.
    let (code, out) = check(&[tmp.path().to_str().unwrap()], None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("broken.yaml:4: invalid YAML"), "{out}");
    assert!(
        out.contains("bad-doc.yaml:8: cannot decode Ingress a/broken"),
        "{out}"
    );
}

/// `sluice [flags]` without a subcommand is still the proxy (flags parse as before).
#[test]
fn flag_only_invocation_still_works() {
    let help = sluice(&["--help"], None);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--manifests <DIR>"), "{help}");
    assert!(help.contains("check"), "{help}");
    let out = sluice(
        &[
            "--manifests",
            "/nonexistent/sluice-check-test",
            "--http-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--manifests /nonexistent/sluice-check-test: not a directory"),
        "{stderr}"
    );
    // Environment defaults of proxy flags (KUBECONFIG, SLUICE_WORKERS) are not flags
    // given: `check` still runs.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("SLUICE_WORKERS", "2")
        .args(["check", "corpus/snippets.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
    // Proxy flags do not mix with the subcommand.
    let out = sluice(&["--manifests", "x", "check", "corpus"], None);
    assert_eq!(out.status.code(), Some(2));
}
