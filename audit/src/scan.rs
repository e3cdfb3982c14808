//! A fast reader for lines of `events.ndjson`: the verifier's hot path.
//!
//! [`scan`] reads the JSON object of one line without building a document: strings are
//! borrowed from the line, their ends found with SIMD (`memchr`), nothing is allocated. It
//! takes only a strict subset of JSON — strings without escapes or control characters,
//! unsigned integers, `true`/`false`/`null`, and the `headers` object of strings — and
//! returns `None` for anything else (an escape, a duplicate key, a missing field, a nested
//! value it does not expect, trailing text). The bundle reader then parses that line with
//! `serde_json`, which gives the same values or a precise error. So the subset decides only
//! the speed, never the verdict: what `scan` accepts, `serde_json` reads identically.

use crate::verify::Fields;

/// One event line, borrowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Line<'a> {
    /// `seq`.
    pub seq: u64,
    /// `subject`.
    pub subject: &'a str,
    /// `headers` (the audit headers; others are ignored).
    pub headers: Fields<'a>,
    /// `payload_sha256`.
    pub payload_sha256: &'a str,
    /// `payload`, absent or `null` when redacted.
    pub payload: Option<&'a str>,
}

/// Reads `line` when it is in the fast subset (see the module documentation).
pub fn scan(line: &str) -> Option<Line<'_>> {
    Scanner::default().scan(line)
}

/// A reader of many lines: it remembers how long each variable-length field of the last
/// line in the export's layout was, and looks for the next line's closing quotes there
/// first (lines of a log repeat their lengths: the same timestamps, actors and types).
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    widths: [usize; WIDTHS],
}

/// Variable-length fields of the export layout whose widths a [`Scanner`] remembers.
const WIDTHS: usize = 9;

impl Scanner {
    /// Reads `line` when it is in the fast subset (see the module documentation).
    pub fn scan<'a>(&mut self, line: &'a str) -> Option<Line<'a>> {
        // JSON strings hold no raw control characters; white space between tokens may
        // hold tabs and carriage returns; strings may hold escapes. Lines with any of these
        // are left to serde_json, so a string below ends at the next quote.
        let quotes = plain(line.as_bytes())?;
        // A width guessed wrong that ends on a later quote can only make the layout not
        // match (the quote count stands guard): the line is then read again, searching
        // for each closing quote.
        exported(line, quotes, &mut self.widths, true)
            .or_else(|| exported(line, quotes, &mut self.widths, false))
            .or_else(|| general(line))
    }
}

/// The number of quotes in `b`, or `None` if it holds a control character or a backslash
/// (one pass, a reduction without early exit, so the compiler vectorises it).
fn plain(b: &[u8]) -> Option<usize> {
    let (mut bad, mut quotes) = (0u8, 0usize);
    // Per-chunk counts fit a byte, which keeps the vector lanes narrow.
    for chunk in b.chunks(255) {
        let mut n = 0u8;
        for &x in chunk {
            bad |= u8::from(x < 0x20) | u8::from(x == b'\\');
            n += u8::from(x == b'"');
        }
        quotes += usize::from(n);
    }
    (bad == 0).then_some(quotes)
}

/// The layout `covenant audit export` writes, byte for byte: the keys in their order, the
/// headers sorted (as the export's map keeps them), no white space. Literal keys are
/// compared, not searched for, and hashes and ids are taken at their fixed widths (a value
/// of another width falls through to [`general`], which reads it all the same); `quotes`
/// is the line's count of quotes, which must be exactly those the layout puts there (so
/// no fixed-width value holds one, which would end it early). Variable-length strings are
/// taken at the width `widths` holds for them when `guess` and a quote stands there (the
/// quote count shows whether one stands inside), else searched for, and their widths
/// kept.
fn exported<'a>(line: &'a str, quotes: usize, widths: &mut [usize; WIDTHS], guess: bool) -> Option<Line<'a>> {
    let mut c = Cursor { s: line, i: 0 };
    let mut string = |c: &mut Cursor<'a>, k: usize| {
        let width = widths.get_mut(k)?;
        if guess && let Some(s) = c.fixed_string(*width) {
            return Some(s);
        }
        let s = c.string()?;
        *width = s.len();
        Some(s)
    };
    c.lit("{\"seq\":")?;
    let seq = c.number()?;
    c.lit(",\"subject\":")?;
    let subject = string(&mut c, 0)?;
    let timed = c.lit(",\"time\":").is_some();
    if timed {
        string(&mut c, 1)?;
    }
    // Each header's name as a literal (compared inline), then its value: hashes and ids
    // at their fixed widths.
    macro_rules! header {
        ($first:literal, $name:literal, var $k:literal) => {{
            c.lit(concat!($first, "\"", $name, "\":"))?;
            Some(string(&mut c, $k)?)
        }};
        ($first:literal, $name:literal, $width:literal) => {{
            c.lit(concat!($first, "\"", $name, "\":"))?;
            Some(c.fixed_string($width)?)
        }};
    }
    let f = Fields {
        actor: header!(",\"headers\":{", "Actor", var 2),
        version: header!(",", "Aggregate-Version", var 3),
        hash: header!(",", "Audit-Hash", 44),
        prev: header!(",", "Audit-Prev", 44),
        audit_v: header!(",", "Audit-V", var 4),
        content_type: header!(",", "Content-Type", var 5),
        event_id: header!(",", "Event-Id", 36),
        event_type: header!(",", "Event-Type", var 6),
        occurred_at: header!(",", "Occurred-At", var 7),
    };
    c.lit("},\"payload_sha256\":")?;
    let payload_sha256 = c.fixed_string(44)?;
    let payload = if c.lit(",\"payload\":").is_some() {
        let p = string(&mut c, 8)?;
        c.lit("}")?;
        Some(p)
    } else {
        c.lit(",\"redacted\":true}")?;
        None
    };
    // Keys and string values: 25, plus the time's key and value, plus the payload's value.
    let strings = 25 + 2 * usize::from(timed) + usize::from(payload.is_some());
    (c.i == line.len() && quotes == 2 * strings).then_some(Line { seq, subject, headers: f, payload_sha256, payload })
}

/// Any JSON object in the subset (keys in any order, white space, other keys).
fn general(line: &str) -> Option<Line<'_>> {
    let mut c = Cursor { s: line, i: 0 };
    let mut out = Line::default();
    let (mut seq, mut subject, mut headers, mut payload_sha256, mut payload) = (false, false, false, false, false);
    c.expect(b'{')?;
    if c.peek()? == b'}' {
        return None;
    }
    loop {
        let key = c.string()?;
        c.expect(b':')?;
        match key {
            "seq" => {
                once(&mut seq)?;
                out.seq = c.number()?;
            }
            "subject" => {
                once(&mut subject)?;
                out.subject = c.string()?;
            }
            "payload_sha256" => {
                once(&mut payload_sha256)?;
                out.payload_sha256 = c.string()?;
            }
            "payload" => {
                once(&mut payload)?;
                out.payload = c.nullable_string()?;
            }
            "headers" => {
                once(&mut headers)?;
                out.headers = c.headers()?;
            }
            _ => c.skip_scalar()?,
        }
        match c.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    c.end()?;
    (seq && subject && headers && payload_sha256).then_some(out)
}

/// Marks a key as seen; `None` the second time (serde refuses duplicate fields).
fn once(seen: &mut bool) -> Option<()> {
    if *seen {
        return None;
    }
    *seen = true;
    Some(())
}

/// The position of the first quote in `b` at or after `from`. Eight bytes at a time: the
/// strings of a line are short, where a SIMD search's set-up costs more than it saves.
fn find_quote(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut i = from;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().ok()?) ^ (ONES * u64::from(b'"'));
        // The lowest byte of x that is zero (a quote) sets the lowest flagged bit; a borrow
        // can flag bytes above it, never below.
        let zero = x.wrapping_sub(ONES) & !x & (ONES << 7);
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x == b'"').map(|p| i + p)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte that is not white space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.i).copied()
    }

    /// The next byte that is not white space, consumed.
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Only white space is left.
    fn end(&mut self) -> Option<()> {
        self.skip_ws();
        (self.i == self.s.len()).then_some(())
    }

    /// A string, borrowed (the line holds no escapes or control characters).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let end = find_quote(self.bytes(), start)?;
        self.i = end + 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        self.s.get(start..end)
    }

    /// The literal `word` next, with no white space before it.
    #[inline(always)]
    fn lit(&mut self, word: &str) -> Option<()> {
        let rest = self.s.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// A string of `width` bytes (no white space before it), if quotes stand at both ends;
    /// the caller makes sure that none stands between them.
    #[inline(always)]
    fn fixed_string(&mut self, width: usize) -> Option<&'a str> {
        let b = self.bytes();
        let (open, close) = (self.i, self.i + 1 + width);
        if b.get(open) != Some(&b'"') || b.get(close) != Some(&b'"') {
            return None;
        }
        self.i = close + 1;
        self.s.get(open + 1..close)
    }

    fn nullable_string(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A JSON unsigned integer that fits a `u64` (no sign, fraction, exponent or leading
    /// zero).
    fn number(&mut self) -> Option<u64> {
        self.skip_ws();
        let b = self.bytes();
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d @ b'0'..=b'9') = b.get(self.i) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        if len == 0 || (len > 1 && b[start] == b'0') {
            return None;
        }
        // A fraction or exponent would make it a float.
        match b.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.skip_ws();
        let rest = self.s.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// Skips a value of a key this reader does not need: a string, number or literal.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'0'..=b'9' => self.number().map(|_| ()),
            _ => None,
        }
    }

    /// The `headers` object: string (or `null`) values; the audit names are kept.
    fn headers(&mut self) -> Option<Fields<'a>> {
        let mut f = Fields::default();
        let mut seen = 0u16;
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(f);
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            let value = self.nullable_string()?;
            if let Some((bit, field)) = f.slot(name) {
                if seen & (1 << bit) != 0 {
                    return None;
                }
                seen |= 1 << bit;
                *field = value;
            }
            match self.next()? {
                b',' => continue,
                b'}' => return Some(f),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"seq":7,"subject":"covenant.events.country.US","time":"2026-01-01T00:00:00+00:00","headers":{"Actor":"system","Aggregate-Version":"2","Audit-Hash":"h=","Audit-Prev":"p=","Audit-V":"1","Content-Type":"application/json","Event-Id":"e","Event-Type":"country.update","Occurred-At":"o"},"payload_sha256":"s=","payload":"eyJ9"}"#;

    #[test]
    fn an_exported_line_is_read_in_full() {
        let l = scan(LINE).expect("the export's own layout");
        assert_eq!(
            (l.seq, l.subject, l.payload_sha256, l.payload),
            (7, "covenant.events.country.US", "s=", Some("eyJ9"))
        );
        let h = l.headers;
        assert_eq!((h.audit_v, h.prev, h.hash, h.version), (Some("1"), Some("p="), Some("h="), Some("2")));
        assert_eq!((h.event_id, h.event_type, h.occurred_at), (Some("e"), Some("country.update"), Some("o")));
        assert_eq!((h.actor, h.content_type), (Some("system"), Some("application/json")));
    }

    /// A line as `covenant audit export` writes it.
    const EXPORTED: &str = r#"{"seq":1,"subject":"bench.events.country.AD","time":"2026-12-04T02:17:44.811240675+00:00","headers":{"Actor":"system","Aggregate-Version":"1","Audit-Hash":"3bw70mSNPIJ3fGedpeL/QDAFSCNurRhKLWWCO+i9y9I=","Audit-Prev":"CrkqkDR8QB9V+3pVZ3DA23zVLXEhL+YEN81H/DI3z/Y=","Audit-V":"1","Content-Type":"application/json","Event-Id":"a0395e41-7799-44ba-90fa-59854627b6d9","Event-Type":"country.registered","Occurred-At":"2026-12-04T02:17:44.807962964Z"},"payload_sha256":"gYplT2nFxKjDRgiAin9xsVbZBptzju+7bblhfqWRgy4=","payload":"eyJjb2RlIjoiQUQiLCJuYW1lIjoiQUQiLCJnZHBfdXNkIjoiMTAwMDAwMCJ9"}"#;

    /// The export layout's reader on `line`, with its quote count.
    fn exported(line: &str) -> Option<Line<'_>> {
        super::exported(line, plain(line.as_bytes())?, &mut [0; WIDTHS], false)
    }

    #[test]
    fn the_export_layout_is_read_by_both_readers_alike() {
        let fast = exported(EXPORTED).expect("the export's layout");
        assert_eq!(Some(fast), general(EXPORTED));
        assert_eq!(fast.headers.hash.map(str::len), Some(44));
        let redacted = EXPORTED.split(",\"payload\":").next().expect("a payload").to_owned() + ",\"redacted\":true}";
        let r = exported(&redacted).expect("a redacted line");
        assert_eq!((r.payload, Some(r)), (None, general(&redacted)));
        // Another width, order or a missing header: only the general reader takes it.
        for other in [
            EXPORTED.replace("\"Audit-V\":\"1\"", "\"Audit-V\":\"1\",\"Extra\":\"x\""),
            EXPORTED.replace("\"Actor\":\"system\",", ""),
            EXPORTED.replace("Event-Id\":\"", "Event-Id\":\"x"),
        ] {
            assert_eq!(exported(&other), None, "{other}");
            assert!(general(&other).is_some(), "{other}");
        }
        // A quote inside a fixed-width value ends it early: not JSON, refused by both.
        for bad in [
            EXPORTED.replace("3bw70mSN", "3bw\"0mSN"),
            EXPORTED.replace("3bw70mSN", "3b\",\"mSN"),
            EXPORTED.replace("a0395e41-7799", "a0395e41\"7799"),
            EXPORTED.replace("gYplT2nF", "gYp\":\"nF"),
        ] {
            assert_eq!(exported(&bad), None, "{bad}");
            assert_eq!(scan(&bad), None, "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quote_is_found_wherever_it_is() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![b'x'; len];
                if at < len {
                    b[at] = b'"';
                    // A byte just above the quote that a borrow could flag.
                    if at + 1 < len {
                        b[at + 1] = b'#';
                    }
                }
                for from in 0..=len {
                    let want = (at < len && at >= from).then_some(at);
                    assert_eq!(find_quote(&b, from), want, "len {len}, quote at {at}, from {from}");
                }
            }
        }
        assert_eq!(find_quote(b"ab", 5), None);
    }

    #[test]
    fn spaces_other_keys_and_a_redacted_line_are_read() {
        let line = " { \"payload\" : null , \"x\": 1, \"redacted\":true, \"headers\" : { \"Other\": \"v\" }, \"seq\":0,\"subject\":\"s\",\"payload_sha256\":\"h\"} ";
        let l = scan(line).expect("in the subset");
        assert_eq!((l.seq, l.payload, l.headers), (0, None, Fields::default()));
    }

    /// Each of these is left to serde_json (which reads it, or says why not).
    #[test]
    fn anything_outside_the_subset_is_declined() {
        let cases = [
            LINE.replace("country.US", r"country.\u0055S"),
            LINE.replace("\"seq\":7", "\"seq\":07"),
            LINE.replace("\"seq\":7", "\"seq\":7.0"),
            LINE.replace("\"seq\":7", "\"seq\":-7"),
            LINE.replace("\"seq\":7", "\"seq\":18446744073709551616"),
            LINE.replace("\"seq\":7", "\"seq\":7,\"seq\":8"),
            LINE.replace("\"Actor\":\"system\"", "\"Actor\":\"system\",\"Actor\":\"x\""),
            LINE.replace("\"Actor\":\"system\"", "\"Actor\":1"),
            LINE.replace("\"time\":\"2026-01-01T00:00:00+00:00\"", "\"time\":[1]"),
            LINE.replace("\"seq\":7,", ""),
            LINE.replace("country.US", "country.U\tS"),
            LINE.replace(",\"subject\"", ",\n\"subject\""),
            format!("{LINE}x"),
            LINE[..LINE.len() - 1].to_owned(),
            "{}".to_owned(),
            String::new(),
        ];
        for case in &cases {
            assert_eq!(scan(case), None, "{case}");
        }
    }
}
