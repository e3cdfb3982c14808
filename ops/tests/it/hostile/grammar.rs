//! Grammar-based generation of GraphQL documents, variables, headers and bodies, some of
//! them corrupted.

use super::*;

pub(super) const FIELDS: &[&str] = &[
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
pub(super) const ARGS: &[&str] = &[
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
pub(super) const TYPES: &[&str] =
    &["Query", "Mutation", "Country", "Project", "CovenantFund", "String", "Int", "ID", "Usd", "Nope"];
pub(super) const DIRECTIVES: &[&str] = &["include", "skip", "deprecated", "specifiedBy", "oneOf", "nope"];

/// Grammar-based generation of GraphQL documents, variables, headers and bodies.
pub(super) struct Gen {
    pub(super) rng: StdRng,
    /// Nodes the current document may still add: generation is deep but never large.
    pub(super) budget: usize,
}

impl Gen {
    /// Whether a composite node may be added (spending one node of the budget).
    pub(super) fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    pub(super) fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.random_range(0..xs.len())]
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub(super) fn name(&mut self, vocab: &[&str]) -> String {
        match self.rng.random_range(0..20) {
            0 => format!("_{}", self.rng.random_range(0..1000)),
            1 => "é".to_owned(), // not a name: a syntax error
            _ => self.pick(vocab).to_owned(),
        }
    }

    /// A GraphQL string literal (quoted), sometimes a block string.
    pub(super) fn string(&mut self) -> String {
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

    pub(super) fn value(&mut self, depth: usize, constant: bool) -> String {
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

    pub(super) fn arguments(&mut self, depth: usize) -> String {
        if !self.chance(0.4) {
            return String::new();
        }
        let n = self.rng.random_range(0..4);
        let items: Vec<String> = (0..n).map(|_| format!("{}: {}", self.name(ARGS), self.value(depth, false))).collect();
        format!("({})", items.join(", "))
    }

    pub(super) fn directives(&mut self, depth: usize) -> String {
        let mut out = String::new();
        while self.chance(0.15) {
            out.push_str(&format!(" @{}{}", self.name(DIRECTIVES), self.arguments(depth)));
        }
        out
    }

    pub(super) fn selection_set(&mut self, depth: usize) -> String {
        let n = if self.spend() { self.rng.random_range(1..5) } else { 1 };
        let items: Vec<String> = (0..n).map(|_| self.selection(depth)).collect();
        format!("{{ {} }}", items.join(" "))
    }

    pub(super) fn selection(&mut self, depth: usize) -> String {
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

    pub(super) fn variable_definitions(&mut self) -> String {
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

    pub(super) fn document(&mut self) -> String {
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
    pub(super) fn corrupt(&mut self, doc: String) -> String {
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
    pub(super) fn json(&mut self, depth: usize) -> serde_json::Value {
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
    pub(super) fn request(&mut self, token: &str) -> Req {
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
            // Too long, or with bytes a log line should not carry: replaced, never echoed.
            let id = match self.rng.random_range(0..4) {
                0 => "r".repeat(self.rng.random_range(100..2000)).into_bytes(),
                1 => b"two words".to_vec(),
                2 => vec![b'r', 0x80, b'\t', b'"'],
                _ => format!("req-{}", self.rng.random_range(0..1_000_000)).into_bytes(),
            };
            headers.push(("x-request-id".into(), id));
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
            return Req { method: "GET".into(), path: format!("/api/graphql?{q}"), headers, body: Vec::new() };
        }
        if self.chance(0.03) {
            // A method no standard names: a label of its own would grow the metrics.
            let token: String =
                (0..self.rng.random_range(1..12)).map(|_| self.rng.random_range(b'A'..=b'Z') as char).collect();
            return Req { method: format!("X{token}").into(), path: "/api/graphql".into(), headers, body };
        }
        Req { method: "POST".into(), path: "/api/graphql".into(), headers, body }
    }
}
