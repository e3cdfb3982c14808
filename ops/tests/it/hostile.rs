//! Hostile input against a live `covenant serve` child process (its default stacks and
//! workers, rate limits off so every request reaches the guard): more than 20,000 requests
//! generated from the GraphQL grammar (documents, variables, headers and bodies, some of
//! them corrupted), plus every class of attack the guard exists for, each at several sizes.
//! The process must not crash, no answer may be a 5xx or show internals, every GraphQL
//! error must carry a documented code other than `INTERNAL`, and a trivial query sent
//! alongside must stay under 100 ms at p99.
//!
//! The README's test command runs this test on its own after the others (`--skip
//! hostile::`, then `hostile::`), so the probe's latency measures the server under hostile
//! load, not the other tests sharing the machine's two cores.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{log_config, nats, pg, register_country};

/// Generated requests (the fixed classes come on top).
const GENERATED: usize = 20_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 12;
/// The codes the README documents; `INTERNAL` is among them but means a bug.
const CODES: &[&str] =
    &["UNAUTHENTICATED", "FORBIDDEN", "BAD_USER_INPUT", "CONFLICT", "NOT_FOUND", "RATE_LIMITED", "UNAVAILABLE"];
/// Words that only an internal error would show a client.
const INTERNALS: &[&str] = &[
    "panicked",
    "thread '",
    "stack backtrace",
    ".rs:",
    "sqlx",
    "SQLSTATE",
    "error returned from database",
    "invalid byte sequence",
    "PgDatabaseError",
    "async_nats",
    "Os {",
    "overflowed",
];

const FIELDS: &[&str] = &[
    "countries",
    "country",
    "projects",
    "project",
    "me",
    "covenantFund",
    "auditStatus",
    "auditEvents",
    "gdpHistory",
    "code",
    "name",
    "gdpUsd",
    "version",
    "totalUsd",
    "asOfSequence",
    "id",
    "budgetUsd",
    "status",
    "sequence",
    "__typename",
    "__schema",
    "__type",
    "types",
    "fields",
    "ofType",
    "kind",
    "args",
    "nope",
    "registerCountry",
    "updateGdp",
    "createProject",
    "updateProject",
    "deleteProject",
    "registerUser",
    "changeRole",
    "logout",
    "events",
];
const ARGS: &[&str] = &[
    "code",
    "first",
    "after",
    "orderBy",
    "countryCode",
    "status",
    "id",
    "last",
    "eventType",
    "subject",
    "name",
    "gdpUsd",
    "budgetUsd",
    "email",
    "role",
    "userId",
    "if",
    "x",
];
const TYPES: &[&str] =
    &["Query", "Mutation", "Country", "Project", "CovenantFund", "String", "Int", "ID", "Usd", "Nope"];
const DIRECTIVES: &[&str] = &["include", "skip", "deprecated", "specifiedBy", "oneOf", "nope"];

/// Grammar-based generation of GraphQL documents, variables, headers and bodies.
struct Gen {
    rng: StdRng,
    /// Nodes the current document may still add: generation is deep but never large.
    budget: usize,
}

impl Gen {
    /// Whether a composite node may be added (spending one node of the budget).
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn name(&mut self, vocab: &[&str]) -> String {
        match self.rng.random_range(0..20) {
            0 => format!("_{}", self.rng.random_range(0..1000)),
            1 => "é".to_owned(), // not a name: a syntax error
            _ => self.pick(vocab).to_owned(),
        }
    }

    /// A GraphQL string literal (quoted), sometimes a block string.
    fn string(&mut self) -> String {
        let pieces = [
            "FR",
            "x",
            "\\n",
            "\\\"",
            "\\\\",
            "\\u0000",
            "\\u00e9",
            "\\uD83D",
            "\\uDE00",
            "\\u{1F600}",
            "é",
            "𝄞",
            "'",
            "%",
            "$",
            "--",
            ";",
            " OR 1=1",
            "\\t",
            "\\q",
        ];
        let n = self.rng.random_range(0..6);
        let body: String = (0..n).map(|_| self.pick(&pieces)).collect();
        if self.chance(0.1) { format!("\"\"\"{}\"\"\"", body.replace("\\", "")) } else { format!("\"{body}\"") }
    }

    fn value(&mut self, depth: usize, constant: bool) -> String {
        let leaf = depth == 0 || self.chance(0.5) || !self.spend();
        if leaf {
            return match self.rng.random_range(0..10) {
                0 => self.rng.random_range(-5i64..100).to_string(),
                1 => ["2147483648", "-2147483649", "99999999999999999999999", "1e400", "0.5", "-0"]
                    [self.rng.random_range(0..6)]
                .to_owned(),
                2 | 3 => self.string(),
                4 => ["true", "false", "null"][self.rng.random_range(0..3)].to_owned(),
                5 => ["CODE", "GDP_DESC", "ACTIVE", "ADMIN", "NOPE"][self.rng.random_range(0..5)].to_owned(),
                6 if !constant => format!("${}", self.name(&["v", "c", "first", "id"])),
                _ => self.string(),
            };
        }
        let n = self.rng.random_range(0..4);
        if self.chance(0.5) {
            let items: Vec<String> = (0..n).map(|_| self.value(depth - 1, constant)).collect();
            format!("[{}]", items.join(", "))
        } else {
            let items: Vec<String> =
                (0..n).map(|_| format!("{}: {}", self.name(ARGS), self.value(depth - 1, constant))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }

    fn arguments(&mut self, depth: usize) -> String {
        if !self.chance(0.4) {
            return String::new();
        }
        let n = self.rng.random_range(0..4);
        let items: Vec<String> = (0..n).map(|_| format!("{}: {}", self.name(ARGS), self.value(depth, false))).collect();
        format!("({})", items.join(", "))
    }

    fn directives(&mut self, depth: usize) -> String {
        let mut out = String::new();
        while self.chance(0.15) {
            out.push_str(&format!(" @{}{}", self.name(DIRECTIVES), self.arguments(depth)));
        }
        out
    }

    fn selection_set(&mut self, depth: usize) -> String {
        let n = if self.spend() { self.rng.random_range(1..5) } else { 1 };
        let items: Vec<String> = (0..n).map(|_| self.selection(depth)).collect();
        format!("{{ {} }}", items.join(" "))
    }

    fn selection(&mut self, depth: usize) -> String {
        match self.rng.random_range(0..10) {
            0 => format!("...F{}{}", self.rng.random_range(0..4), self.directives(depth)),
            1 if depth > 0 && self.budget > 0 => {
                format!("... on {}{} {}", self.name(TYPES), self.directives(depth), self.selection_set(depth - 1))
            }
            _ => {
                let alias =
                    if self.chance(0.15) { format!("{}: ", self.name(&["a", "b", "c"])) } else { String::new() };
                let sub = if depth > 0 && self.budget > 0 && self.chance(0.6) {
                    self.selection_set(depth - 1)
                } else {
                    String::new()
                };
                format!("{alias}{}{}{} {sub}", self.name(FIELDS), self.arguments(depth.min(3)), self.directives(2))
            }
        }
    }

    fn variable_definitions(&mut self) -> String {
        if !self.chance(0.3) {
            return String::new();
        }
        let n = self.rng.random_range(0..3);
        let defs: Vec<String> = (0..n)
            .map(|_| {
                let mut ty = self.name(TYPES);
                for _ in 0..self.rng.random_range(0..3) {
                    ty = format!("[{ty}]");
                }
                if self.chance(0.3) {
                    ty.push('!');
                }
                let default = if self.chance(0.3) { format!(" = {}", self.value(3, true)) } else { String::new() };
                format!("${}: {ty}{default}", self.name(&["v", "c", "first", "id"]))
            })
            .collect();
        format!("({})", defs.join(", "))
    }

    fn document(&mut self) -> String {
        self.budget = self.rng.random_range(4..200);
        let depth = if self.chance(0.05) { self.rng.random_range(8..40) } else { self.rng.random_range(0..6) };
        let mut defs = Vec::new();
        for _ in 0..self.rng.random_range(1..4) {
            if self.chance(0.75) {
                let kind =
                    ["", "query", "mutation", "subscription", "query Q", "mutation M"][self.rng.random_range(0..6)];
                let vars = if kind.is_empty() { String::new() } else { self.variable_definitions() };
                defs.push(format!("{kind}{vars}{} {}", self.directives(2), self.selection_set(depth)));
            } else {
                let n = self.rng.random_range(0..4);
                let on = self.name(TYPES);
                defs.push(format!("fragment F{n} on {on} {}", self.selection_set(depth)));
            }
        }
        let doc = defs.join("\n");
        if self.chance(0.15) { self.corrupt(doc) } else { doc }
    }

    /// Deletes, repeats or inserts a few characters: most results are syntax errors.
    fn corrupt(&mut self, doc: String) -> String {
        let mut chars: Vec<char> = doc.chars().collect();
        for _ in 0..self.rng.random_range(1..4) {
            if chars.is_empty() {
                break;
            }
            let at = self.rng.random_range(0..chars.len());
            match self.rng.random_range(0..3) {
                0 => {
                    chars.remove(at);
                }
                1 => {
                    let c = chars[at];
                    chars.insert(at, c);
                }
                _ => chars.insert(
                    at,
                    ['{', '}', '[', ']', '(', ')', '"', '#', '$', '@', '!', '\u{0}'][self.rng.random_range(0..12)],
                ),
            }
        }
        chars.into_iter().collect()
    }

    /// A JSON value for the `variables` map.
    fn json(&mut self, depth: usize) -> serde_json::Value {
        use serde_json::json;
        if depth == 0 || self.chance(0.5) || !self.spend() {
            return match self.rng.random_range(0..7) {
                0 => json!(self.rng.random_range(-10i64..100)),
                1 => json!(["FR", "x\u{0}y", "", "é", "\u{1F600}", "ZZ"][self.rng.random_range(0..6)]),
                2 => json!(null),
                3 => json!(true),
                4 => json!(1e300),
                5 => json!("99999999999999999999999999"),
                _ => json!(uuid::Uuid::new_v4().to_string()),
            };
        }
        if self.chance(0.5) {
            serde_json::Value::Array((0..self.rng.random_range(0..3)).map(|_| self.json(depth - 1)).collect())
        } else {
            let map = (0..self.rng.random_range(0..3)).map(|_| (self.name(ARGS), self.json(depth - 1))).collect();
            serde_json::Value::Object(map)
        }
    }

    /// One generated request: method, path, headers, body.
    fn request(&mut self, token: &str) -> Req {
        let doc = self.document();
        self.budget = 40;
        let mut body = serde_json::Map::new();
        match self.rng.random_range(0..20) {
            0 => {
                body.insert("query".into(), self.json(2));
            }
            1 => {}
            _ => {
                body.insert("query".into(), doc.clone().into());
            }
        }
        if self.chance(0.3) {
            let vars = if self.chance(0.8) {
                let map =
                    (0..self.rng.random_range(0..4)).map(|_| (self.name(&["v", "c", "first", "id"]), self.json(3)));
                serde_json::Value::Object(map.collect())
            } else {
                self.json(2)
            };
            body.insert("variables".into(), vars);
        }
        if self.chance(0.1) {
            let op = if self.chance(0.5) { "Q".into() } else { self.json(1) };
            body.insert("operationName".into(), op);
        }
        if self.chance(0.05) {
            body.insert("extensions".into(), self.json(2));
        }
        let mut body = serde_json::Value::Object(body).to_string().into_bytes();
        match self.rng.random_range(0..40) {
            0 => body.truncate(body.len() / 2),
            1 => body = format!("[{}]", String::from_utf8_lossy(&body)).into_bytes(),
            2 => body.insert(body.len() / 2, 0xff),
            3 => body = doc.clone().into_bytes(),
            _ => {}
        }
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        let ctype = match self.rng.random_range(0..20) {
            0 => "text/plain",
            1 => "application/graphql",
            2 => "application/json; charset=latin1",
            3 => "multipart/form-data; boundary=x",
            _ => "application/json",
        };
        headers.push(("content-type".into(), ctype.into()));
        let accept = match self.rng.random_range(0..10) {
            0 => "text/html",
            1 => "*/*",
            2 => "application/json",
            _ => "application/graphql-response+json",
        };
        headers.push(("accept".into(), accept.into()));
        match self.rng.random_range(0..10) {
            0 => headers.push(("authorization".into(), format!("Bearer {token}").into_bytes())),
            1 => headers.push(("authorization".into(), b"Bearer eyJhbGciOiJub25lIn0.e30.".to_vec())),
            2 => headers.push(("authorization".into(), vec![b'B', b'e', b'a', b'r', b'e', b'r', b' ', 0xff, 0xc3])),
            3 => headers.push(("authorization".into(), format!("Basic {}", "A".repeat(4000)).into_bytes())),
            _ => {}
        }
        if self.chance(0.05) {
            let v = ["-1", "18446744073709551616", "abc", "99999999999", "\u{e9}"][self.rng.random_range(0..5)];
            headers.push(("covenant-min-sequence".into(), v.as_bytes().to_vec()));
        }
        if self.chance(0.05) {
            let v = ["00-zz-zz-01", "00-00000000000000000000000000000000-0000000000000000-01", ""];
            headers.push(("traceparent".into(), v[self.rng.random_range(0..3)].as_bytes().to_vec()));
        }
        if self.chance(0.05) {
            headers.push(("idempotency-key".into(), "k".repeat(self.rng.random_range(0..600)).into_bytes()));
        }
        if self.chance(0.05) {
            // GET with the document in the URL, percent-encoded or not.
            let enc: String = doc
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let q = match self.rng.random_range(0..3) {
                0 => format!("query={enc}"),
                1 => format!("query={enc}&variables=%7B%22v%22%3A%5B%5B%5B"),
                _ => "query=%FF%FE&x=%".to_owned(),
            };
            return Req { method: "GET", path: format!("/api/graphql?{q}"), headers, body: Vec::new() };
        }
        Req { method: "POST", path: "/api/graphql".into(), headers, body }
    }
}

/// One request to send.
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn post(query: &str) -> Req {
    post_json(serde_json::json!({ "query": query }))
}

fn post_json(body: serde_json::Value) -> Req {
    post_bytes(body.to_string().into_bytes())
}

fn post_bytes(body: Vec<u8>) -> Req {
    Req {
        method: "POST",
        path: "/api/graphql".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("accept".into(), b"application/graphql-response+json".to_vec()),
        ],
        body,
    }
}

/// `open` repeated `n` times, a leaf, then `close` repeated `n` times.
fn nest(prefix: &str, open: &str, leaf: &str, close: &str, suffix: &str, n: usize) -> String {
    format!("{prefix}{}{leaf}{}{suffix}", open.repeat(n), close.repeat(n))
}

/// Every class of the issue, each at sizes around and far beyond its bound.
fn classes() -> Vec<(String, Req)> {
    let mut out = Vec::new();
    for n in [33, 100, 1_000, 5_000, 20_000] {
        let cases = [
            ("selections", nest("", "{ a ", "b", " }", "", n)),
            ("list values", nest("{ countries(after: ", "[", "1", "]", ") { code } }", n)),
            ("object values", nest("{ countries(after: ", "{a: ", "1", "}", ") { code } }", n)),
            ("directive arguments", nest("{ __typename @include(if: ", "[", "true", "]", ") }", n)),
            ("variable defaults", nest("query($v: String = ", "[", "1", "]", ") { __typename }", n)),
            ("variable types", nest("query($v: ", "[", "Int", "]", ") { __typename }", n)),
            ("inline fragments", nest("{ ", "... on Query { ", "__typename", " }", " }", n)),
            ("parentheses", nest("{ a", "(", "x: 1", ")", " }", n)),
        ];
        for (what, q) in cases {
            out.push((format!("{what} nested {n} deep"), post(&q)));
        }
        let deep_json = format!(
            "{{\"query\":\"query($v: Boolean!) {{ __typename @include(if: $v) }}\",\"variables\":{{\"v\":{}}}}}",
            nest("", "[", "1", "]", "", n)
        );
        out.push((format!("JSON variables nested {n} deep"), post_bytes(deep_json.into_bytes())));
    }
    for levels in [10, 16, 20, 24, 30, 40] {
        let mut q = String::from("{ ...F0 }\nfragment F0 on Query { __typename }\n");
        for i in 1..=levels {
            q.push_str(&format!("fragment F{i} on Query {{ ...F{} ...F{} }}\n", i - 1, i - 1));
        }
        q = q.replacen("...F0", &format!("...F{levels}"), 1);
        out.push((format!("fragments doubling {levels} levels"), post(&q)));
    }
    out.push(("a fragment cycle".into(), post("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")));
    out.push(("a self-spread".into(), post("{ ...A } fragment A on Query { __typename ...A }")));
    let wide: String = (0..3000).map(|i| format!("a{i}: __typename ")).collect();
    out.push(("3,000 aliases".into(), post(&format!("{{ {wide} }}"))));
    out.push(("65 KiB of query".into(), post(&format!("{{ __typename }} # {}", "x".repeat(65 * 1024)))));
    // The server answers 413 before reading the rest and closes the connection, which the
    // client's pool may not have noticed when it sends the next request on it.
    let mut huge = post_bytes(vec![b' '; 2 << 20]);
    huge.headers.push(("connection".into(), b"close".to_vec()));
    out.push(("a 2 MiB body".into(), huge));
    out.push(("NUL in a country filter".into(), post(r#"{ projects(countryCode: "\u0000") { id } }"#)));
    out.push(("NUL in an audit filter".into(), post(r#"{ auditEvents(eventType: "\u0000") { sequence } }"#)));
    out.push((
        "NUL in a login email".into(),
        post(r#"mutation { login(email: "a\u0000@b.c", password: "x") { token } }"#),
    ));
    out.push(("NUL in a block string".into(), post("{ country(code: \"\"\"F\u{0}R\"\"\") { code } }")));
    out.push((
        "NUL in a variable".into(),
        post_json(serde_json::json!({"query": "query($c: String) { projects(countryCode: $c) { id } }", "variables": {"c": "F\u{0}R"}})),
    ));
    out.push((
        "invalid UTF-8 in the body".into(),
        post_bytes(b"{\"query\":\"{ country(code: \\\"\xff\xfe\\\") { code } }\"}".to_vec()),
    ));
    out.push((
        "invalid UTF-8 in the URL".into(),
        Req {
            method: "GET",
            path: "/api/graphql?query=%FF%FE".into(),
            headers: vec![("accept".into(), b"application/json".to_vec())],
            body: Vec::new(),
        },
    ));
    let vars: String = (0..200).map(|i| format!("$v{i}: Int ")).collect();
    out.push(("200 variable definitions".into(), post(&format!("query({vars}) {{ __typename }}"))));
    let dirs: String = (0..500).map(|_| "@include(if: true) ").collect();
    out.push(("500 directives".into(), post(&format!("{{ __typename {dirs} }}"))));
    let ops: String = (0..100).map(|i| format!("query Q{i} {{ __typename }} ")).collect();
    out.push(("100 operations".into(), post(&ops)));
    out.push(("an unterminated block string".into(), post(&format!("{{ a(x: \"\"\"{}", "{".repeat(50_000)))));
    out.push((
        "brackets in comments and strings".into(),
        post(&format!("{{ __typename # {}\n a(x: \"{}\") }}", "[".repeat(5000), "{".repeat(5000))),
    ));
    out
}

/// An answer, as the suite reads it.
struct Answer {
    status: u16,
    body: String,
}

async fn send(client: &Client<HttpConnector, Full<Bytes>>, base: &str, r: &Req) -> Result<Answer, String> {
    let mut b = hyper::Request::builder().method(r.method).uri(format!("{base}{}", r.path));
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), hyper::header::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?);
    }
    let req = b.body(Full::new(Bytes::from(r.body.clone()))).map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
}

/// What is wrong with an answer, if anything.
fn judge(a: &Answer) -> Option<String> {
    if a.status >= 500 {
        return Some(format!("status {}", a.status));
    }
    if let Some(w) = INTERNALS.iter().find(|w| a.body.contains(**w)) {
        return Some(format!("shows internals ({w:?})"));
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.body) {
        for e in v["errors"].as_array().into_iter().flatten() {
            let code = e["extensions"]["code"].as_str().unwrap_or("<none>");
            if !CODES.contains(&code) {
                return Some(format!("error code {code}: {}", e["message"]));
            }
        }
    }
    None
}

fn spawn_serve(env: &[(&str, String)], log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_covenant"))
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("COVENANT_RATE_LIMIT_IP", "off")
        .env("COVENANT_RATE_LIMIT_USER", "off")
        .env("COVENANT_RATE_LIMIT_LOGIN", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn covenant serve")
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_hostile_requests_crash_nothing_and_leak_nothing() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "FR", "France", 3_000).await;
    register_country(&side, "JP", "Japan", 4_000).await;
    let port = covenant_ops::managed::free_port().expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("COVENANT_NATS_URL", server.url()),
        ("COVENANT_DATABASE_URL", cluster.url("covenant")),
        ("COVENANT_STREAM", cfg.stream.clone()),
        ("COVENANT_SUBJECT_PREFIX", cfg.subject_prefix.clone()),
        ("COVENANT_HTTP_ADDR", format!("127.0.0.1:{port}")),
    ];
    let logfile = tempfile::NamedTempFile::new().expect("log");
    let mut child = spawn_serve(&env, logfile.path());
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let health = Req { method: "GET", path: "/api/healthcheck".into(), headers: Vec::new(), body: Vec::new() };
    let up = crate::harness::eventually(Duration::from_secs(60), async || {
        send(&client, &base, &health).await.is_ok_and(|a| a.status == 200)
    })
    .await;
    assert!(
        up,
        "covenant serve did not become healthy:\n{}",
        std::fs::read_to_string(logfile.path()).unwrap_or_default()
    );

    // A signed-in editor, so generated mutations reach their resolvers too.
    let password = "correct horse battery";
    covenant_ops::users::create(&side, &pool, "steward@hostile.test", covenant_domain::Role::Steward, password)
        .await
        .expect("create user");
    let login =
        post(&format!(r#"mutation {{ login(email: "steward@hostile.test", password: "{password}") {{ token }} }}"#));
    let mut token = String::new();
    let signed_in = crate::harness::eventually(Duration::from_secs(20), async || {
        let Ok(a) = send(&client, &base, &login).await else { return false };
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        v["data"]["login"]["token"].as_str().map(|t| token = t.to_owned()).is_some()
    })
    .await;
    assert!(signed_in, "the steward signs in");

    // The probe: a trivial query every 10 ms, on its own connection, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let trivial = post("{ __typename }");
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let a = send(&client, &base, &trivial).await.expect("the probe is answered");
                assert_eq!(a.status, 200, "{}", a.body);
                times.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            times
        })
    };

    let started = Instant::now();
    let classes = classes();
    let mut failures = Vec::new();
    let mut refused_by_code = std::collections::BTreeMap::<String, u64>::new();
    for (what, req) in &classes {
        match send(&client, &base, req).await {
            Ok(a) => {
                if let Some(bad) = judge(&a) {
                    failures.push(format!("{what}: {bad}: {}", a.body.chars().take(300).collect::<String>()));
                }
                let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
                let code = v["errors"][0]["extensions"]["code"].as_str().unwrap_or("none").to_owned();
                // Every class is the client's mistake, refused as such, with nothing run.
                if code != "BAD_USER_INPUT" || v.get("data").is_some_and(|d| !d.is_null()) {
                    failures.push(format!("{what}: answered {} {}", a.status, a.body));
                }
                *refused_by_code.entry(code).or_default() += 1;
                println!("{what}: {} {}", a.status, a.body.chars().take(160).collect::<String>());
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    let class_count = classes.len();

    let next = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let problems = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (client, base, next, statuses, problems, token) =
                (client.clone(), base.clone(), next.clone(), statuses.clone(), problems.clone(), token.clone());
            tokio::spawn(async move {
                let mut g = Gen { rng: StdRng::seed_from_u64(0xC0FE + w as u64), budget: 0 };
                while next.fetch_add(1, Ordering::Relaxed) < GENERATED as u64 {
                    let req = g.request(&token);
                    match send(&client, &base, &req).await {
                        Ok(a) => {
                            *statuses.lock().expect("lock").entry(a.status).or_default() += 1;
                            if let Some(bad) = judge(&a) {
                                let body = String::from_utf8_lossy(&req.body).chars().take(300).collect::<String>();
                                problems.lock().expect("lock").push(format!("{bad}: {body} -> {}", a.body));
                            }
                        }
                        Err(e) => problems.lock().expect("lock").push(format!("no answer ({e})")),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    let mut times = probe.await.expect("probe");
    let elapsed = started.elapsed();
    times.sort();
    let (p50, p99, max) = (quantile(&times, 0.5), quantile(&times, 0.99), *times.last().expect("samples"));

    let alive = child.try_wait().expect("try_wait").is_none();
    let metrics =
        send(&client, &base, &Req { method: "GET", path: "/metrics".into(), headers: Vec::new(), body: Vec::new() })
            .await
            .map(|a| a.body)
            .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(logfile.path()).unwrap_or_default();
    let problems = problems.lock().expect("lock").clone();
    println!(
        "hostile suite: {} generated + {class_count} class requests in {:.1} s; statuses {:?}; class codes {refused_by_code:?}; \
         probe {} samples p50 {p50:?} p99 {p99:?} max {max:?}",
        GENERATED,
        elapsed.as_secs_f64(),
        statuses.lock().expect("lock"),
        times.len()
    );
    assert!(alive, "covenant serve died:\n{log}");
    assert!(!log.contains("panicked") && !log.contains("overflowed"), "the server log shows a panic:\n{log}");
    assert!(
        metrics.lines().all(|l| !l.starts_with("covenant_http_panics_total") || l.ends_with(" 0")),
        "a request panicked"
    );
    assert!(failures.is_empty(), "{} class failures:\n{}", failures.len(), failures.join("\n"));
    assert!(
        problems.is_empty(),
        "{} generated failures, first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    let served: u64 = statuses.lock().expect("lock").values().sum();
    assert_eq!(served, GENERATED as u64, "every generated request was answered");
    assert!(p99 < Duration::from_millis(100), "the trivial query's p99 was {p99:?} (p50 {p50:?}, max {max:?})");
}
