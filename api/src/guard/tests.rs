use super::*;

fn check(q: &str) -> Result<(), Refusal> {
    check_text(q, &BOUNDS)?;
    let doc = async_graphql::parser::parse_query(q).expect("parses");
    check_document(&doc, &Variables::default(), &BOUNDS)
}

#[test]
fn ordinary_queries_pass() {
    check("{ countries { code name gdpUsd } }").expect("plain");
    check("query Q($c: String) { projects(countryCode: $c) { id name } } fragment F on Query { __typename }")
        .expect("with a fragment");
    check("{ a { b { c { d { e { f { g { h { i { j } } } } } } } } } }").expect("depth 10");
}

#[test]
fn deep_nesting_of_every_construct_is_refused_before_parsing() {
    let n = 5000;
    let cases = [
        format!("{}{}", "{a".repeat(n), "}".repeat(n)),
        format!("{{ a(x: {}1{}) }}", "[".repeat(n), "]".repeat(n)),
        format!("{{ a(x: {}1{}) }}", "{b: ".repeat(n), "}".repeat(n)),
        format!("query($v: {}Int{} = 1) {{ a }}", "[".repeat(n), "]".repeat(n)),
        format!("query($v: Int = {}1{}) {{ a }}", "[".repeat(n), "]".repeat(n)),
        format!("{{ a @d(x: {}1{}) }}", "[".repeat(n), "]".repeat(n)),
    ];
    for q in cases {
        assert!(matches!(check_text(&q, &BOUNDS), Err(Refusal::TooNested { max: 32, .. })), "{}", &q[..40]);
    }
}

#[test]
fn brackets_in_strings_and_comments_do_not_count() {
    let q = format!(
        "{{ a(x: \"{}\", y: \"\"\"{}\\\"\"\" {} \"\"\") # {}\n }}",
        "[".repeat(100),
        "{".repeat(100),
        "(".repeat(100),
        "[".repeat(100)
    );
    check_text(&q, &BOUNDS).expect("strings and comments hold no nesting");
    // A quote inside a comment does not open a string that would hide brackets.
    let hidden = format!("{{ a # \"\n {}1{} }}", "[".repeat(40), "]".repeat(40));
    assert!(check_text(&hidden, &BOUNDS).is_err());
    // A string ends at its line's end, as the grammar says.
    let unterminated = format!("{{ a(x: \"open\n {}1{}) }}", "[".repeat(40), "]".repeat(40));
    assert!(check_text(&unterminated, &BOUNDS).is_err());
}

#[test]
fn fragment_expansion_is_measured_once_per_fragment() {
    let mut q = String::from("query { ...F0 }\nfragment F0 on Query { __typename }\n");
    for i in 1..=24 {
        q.push_str(&format!("fragment F{i} on Query {{ ...F{} ...F{} }}\n", i - 1, i - 1));
    }
    q = q.replacen("...F0 }", "...F24 }", 1);
    let doc = async_graphql::parser::parse_query(&q).expect("parses");
    let mut visits = 0;
    let err = check_document_counting(&doc, &Variables::default(), &BOUNDS, &mut visits).expect_err("refused");
    assert!(matches!(err, Refusal::TooManyFields { fields, .. } if fields == 1 << 24), "{err:?}");
    assert!(visits < 100, "{visits} selection sets visited for 25 fragments: each is measured once");
}

#[test]
fn fragment_cycles_are_refused() {
    let err = check("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").expect_err("cycle");
    assert!(matches!(err, Refusal::FragmentCycle(_)), "{err:?}");
    let err = check("{ ...A } fragment A on Query { a { ...A } }").expect_err("cycle under a field");
    assert!(matches!(err, Refusal::FragmentCycle(_)), "{err:?}");
}

#[test]
fn depth_counts_through_fragments_and_introspection_has_its_own_bound() {
    let err = check("{ a { ...F } } fragment F on T { b { c { d { e { f { g { h { i { j { k } } } } } } } } } }")
        .expect_err("depth 11 through a fragment");
    assert!(matches!(err, Refusal::TooDeep { depth: 11, max: 10, what: "" }), "{err:?}");
    let deep_type_ref =
        format!("{{ __schema {{ types {{ fields {{ type {}kind{} }} }} }} }}", "{ ofType ".repeat(10), " }".repeat(10));
    check(&deep_type_ref).expect("introspection 14 levels deep");
    let too_deep = format!("{{ __type(name: \"X\") {}kind{} }}", "{ ofType ".repeat(16), " }".repeat(16));
    assert!(matches!(check(&too_deep), Err(Refusal::TooDeep { max: 16, what: " (introspection)", .. })));
}

#[test]
fn nul_anywhere_in_strings_is_refused() {
    for q in [
        r#"{ projects(countryCode: "\u0000") { id } }"#,
        r#"{ a(x: ["ok", {k: "\u0000"}]) }"#,
        r#"{ a @include(if: true) @d(x: "a\u0000b") }"#,
        r#"query($v: String = "\u0000") { a }"#,
    ] {
        assert_eq!(check(q), Err(Refusal::Nul), "{q}");
    }
    let doc = async_graphql::parser::parse_query("query($v: String) { a(x: $v) }").expect("parses");
    let vars = Variables::from_json(serde_json::json!({ "v": { "deep": ["x\u{0}"] } }));
    assert_eq!(check_document(&doc, &vars, &BOUNDS), Err(Refusal::Nul));
}

/// A document seen before is not parsed again, and is still checked with this request's
/// variables and bounds; documents that fail to parse and long ones are not kept.
#[test]
fn a_cached_document_is_checked_on_every_request() {
    let q = "query($v: String) { country(code: $v) { name } } # cached_document_is_checked";
    let fine = Variables::from_json(serde_json::json!({ "v": "FR" }));
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let counted = recorder.handle();
    let (first, again) = metrics::with_local_recorder(&recorder, || {
        let first = parse_checked(q, &fine, &BOUNDS).expect("parses");
        assert!(DOCUMENTS.get(q).is_some(), "kept after its first parse");
        (first, parse_checked(q, &fine, &BOUNDS).expect("from the cache"))
    });
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    let text = counted.render();
    for result in ["hit", "miss"] {
        assert!(text.contains(&format!("covenant_graphql_document_cache_total{{result=\"{result}\"}} 1")), "{text}");
    }
    let nul = Variables::from_json(serde_json::json!({ "v": "F\u{0}R" }));
    assert_eq!(parse_checked(q, &nul, &BOUNDS).map(|_| ()).map_err(|e| e.message), Err(Refusal::Nul.to_string()));
    let shallow = Bounds { max_depth: 1, ..BOUNDS };
    assert!(parse_checked(q, &fine, &shallow).is_err(), "the bounds of this request apply");
    assert!(parse_checked("{ broken", &fine, &BOUNDS).is_err() && DOCUMENTS.get("{ broken").is_none());
    let long = format!("{{ a{} }}", " ".repeat(PARSE_INLINE_BYTES));
    parse_checked(&long, &fine, &BOUNDS).expect("a long document parses");
    assert!(DOCUMENTS.get(long.as_str()).is_none(), "long documents are not kept");
}

#[test]
fn counts_are_bounded() {
    let many_fields = format!("{{ {} }}", (0..1001).map(|i| format!("a{i}: x")).collect::<Vec<_>>().join(" "));
    assert!(matches!(check(&many_fields), Err(Refusal::TooManyFields { fields: 1001, .. })));
    let many_directives = format!("{{ a {} }}", "@skip(if: false) ".repeat(51));
    assert!(matches!(check(&many_directives), Err(Refusal::TooMany { what: "directives", .. })));
    let vars = (0..51).map(|i| format!("$v{i}: Int")).collect::<Vec<_>>().join(", ");
    assert!(matches!(
        check(&format!("query({vars}) {{ a }}")),
        Err(Refusal::TooMany { what: "variable definitions", .. })
    ));
    let long = format!("{{ a }}{}", " ".repeat(BOUNDS.max_query_bytes));
    assert!(matches!(check_text(&long, &BOUNDS), Err(Refusal::TooLong { .. })));
}

/// The guard's fuzz target: proptest drives it with generated documents (cargo test
/// runs it with the rest; `PROPTEST_CASES=100000 cargo test -p covenant-api guard`
/// runs it longer).
mod fuzz {
    use proptest::prelude::*;

    use super::super::*;

    /// One level of nesting, as the generator writes it.
    #[derive(Debug, Clone, Copy)]
    enum Level {
        Selection,
        InlineFragment,
        Arguments,
        DirectiveArguments,
        List,
        Object,
    }

    fn level() -> impl Strategy<Value = Level> {
        prop_oneof![
            Just(Level::Selection),
            Just(Level::InlineFragment),
            Just(Level::Arguments),
            Just(Level::DirectiveArguments),
            Just(Level::List),
            Just(Level::Object),
        ]
    }

    /// A syntactically valid document nesting `levels` (each one bracket deep) inside
    /// an operation, or inside a variable's default value; returns it and its bracket
    /// depth.
    fn render(levels: &[Level], in_default: bool) -> (String, usize) {
        let (mut open, mut close) = (String::new(), Vec::new());
        let mut in_value = in_default;
        for l in levels {
            let (o, c, value) = match (in_value, l) {
                (false, Level::Selection) => ("f { ", " }", false),
                (false, Level::InlineFragment) => ("... on Query { ", " }", false),
                (false, Level::Arguments | Level::List | Level::Object) => ("f(x: ", ")", true),
                (false, Level::DirectiveArguments) => ("f @include(if: ", ")", true),
                (true, Level::Object) => ("{a: ", "}", true),
                (true, _) => ("[", "]", true),
            };
            open.push_str(o);
            close.push(c);
            in_value = value;
        }
        let leaf = if in_value { "1" } else { "__typename" };
        close.reverse();
        let inner = format!("{open}{leaf}{}", close.concat());
        if in_default {
            (format!("query($v: [Int] = {inner}) {{ __typename }}"), levels.len() + 1)
        } else {
            (format!("{{ {inner} }}"), levels.len() + 1)
        }
    }

    /// Pieces that make lexing hard: brackets, quotes, escapes, block strings, comments
    /// and line ends in every order.
    const PIECES: &[&str] = &[
        "{",
        "[",
        "(",
        "}",
        "]",
        ")",
        "\"",
        "\"\"\"",
        "\\",
        "\\\"",
        "\\\"\"\"",
        "\n",
        "\r",
        "#",
        "a",
        " ",
        "x: ",
        "... on Q ",
        "...F ",
        "$v",
        "@d",
        ",",
        "fragment F on Q ",
        "query($v: Int = ",
        "\u{0}",
        "é",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Nesting of any mix of constructs is refused exactly when it goes over the
        /// bound, and a document within the bound parses (the guard never refuses a
        /// valid document for its nesting alone).
        #[test]
        fn nesting_of_any_construct_is_refused_exactly_above_the_bound(
            levels in prop::collection::vec(level(), 0..200),
            in_default in any::<bool>(),
        ) {
            let (doc, depth) = render(&levels, in_default);
            let result = parse_checked(&doc, &Variables::default(), &BOUNDS);
            let refused_nesting = matches!(
                check_text(&doc, &BOUNDS),
                Err(Refusal::TooNested { .. })
            );
            prop_assert_eq!(refused_nesting, depth > BOUNDS.max_nesting, "{}", doc);
            if depth > BOUNDS.max_nesting {
                prop_assert!(result.is_err());
            } else {
                prop_assert!(async_graphql::parser::parse_query(&doc).is_ok(), "{}", doc);
            }
        }

        /// Any soup of hard-to-lex pieces, up to 60 KB, is answered (refused or parsed):
        /// the guard's view of strings and comments never lets the parser recurse past
        /// what a worker's stack holds.
        #[test]
        fn any_text_is_answered_without_overflowing(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 0..6000),
        ) {
            let doc: String = pieces.concat();
            let _ = parse_checked(&doc, &Variables::default(), &BOUNDS);
        }

        /// Arbitrary characters never panic the guard.
        #[test]
        fn arbitrary_characters_never_panic(chars in prop::collection::vec(any::<char>(), 0..2000)) {
            let doc: String = chars.into_iter().collect();
            let _ = parse_checked(&doc, &Variables::default(), &BOUNDS);
        }

        /// Fragment graphs of any shape (each fragment spreads earlier ones, any
        /// number of times) are measured in visits linear in the document.
        #[test]
        fn fragment_graphs_cost_visits_linear_in_the_document(
            spreads in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), 1..50),
        ) {
            let mut doc = String::from("{ ...F0 }\nfragment F0 on Query { __typename }\n");
            let mut size = 2;
            for (i, s) in spreads.iter().enumerate() {
                let i = i + 1;
                let body: String = s.iter().map(|ix| format!("...F{} ", ix.index(i))).collect();
                size += s.len() + 1;
                doc.push_str(&format!("fragment F{i} on Query {{ __typename {body}}}\n"));
            }
            let parsed = async_graphql::parser::parse_query(&doc).expect("parses");
            let mut visits = 0;
            let _ = check_document_counting(&parsed, &Variables::default(), &BOUNDS, &mut visits);
            prop_assert!(visits <= 4 * size + 8, "{} visits for {} selections", visits, size);
        }
    }
}
