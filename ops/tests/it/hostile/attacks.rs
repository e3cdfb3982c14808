//! The requests of the fixed attack classes, each at sizes around and far beyond its bound.

/// One request to send.
pub(super) struct Req {
    /// A standard method, or a token the generator made up.
    pub(super) method: std::borrow::Cow<'static, str>,
    pub(super) path: String,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Vec<u8>,
}

pub(super) fn post(query: &str) -> Req {
    post_json(serde_json::json!({ "query": query }))
}

pub(super) fn post_json(body: serde_json::Value) -> Req {
    post_bytes(body.to_string().into_bytes())
}

pub(super) fn post_bytes(body: Vec<u8>) -> Req {
    Req {
        method: "POST".into(),
        path: "/api/graphql".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("accept".into(), b"application/graphql-response+json".to_vec()),
        ],
        body,
    }
}

/// `open` repeated `n` times, a leaf, then `close` repeated `n` times.
pub(super) fn nest(prefix: &str, open: &str, leaf: &str, close: &str, suffix: &str, n: usize) -> String {
    format!("{prefix}{}{leaf}{}{suffix}", open.repeat(n), close.repeat(n))
}

/// Every class of the issue, each at sizes around and far beyond its bound.
pub(super) fn classes() -> Vec<(String, Req)> {
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
            method: "GET".into(),
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
