//! Erlang external term format: bounded decoding and small term helpers.
//!
//! `eetf` trusts its input: it allocates whatever a length field claims and
//! panics on a few tags. Frames come from the VM, but recordings and fuzzers
//! do not, so every byte string is first walked by [`validate`], which checks
//! each length against the bytes actually present, bounds nesting depth and
//! refuses the tags `eetf` cannot handle. Only then is it handed to `eetf`.

use eetf::{Atom, Binary, FixInteger, List, Map, Term, Tuple};

/// Deepest nesting of tuples, lists and maps accepted in one term.
pub const MAX_DEPTH: usize = 256;

/// Most terms (elements of tuples, lists and maps included) in one frame.
/// A decoded term takes about 56 bytes whatever its encoding, so a 16 MiB
/// frame of empty lists would otherwise decode to almost a gigabyte.
pub const MAX_TERMS: u64 = 1 << 20;

/// Longest atom, in characters, as in the VM.
const MAX_ATOM_CHARS: usize = 255;

const VERSION: u8 = 131;

/// Why a byte string is not an acceptable term.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TermError {
    #[error("empty frame")]
    Empty,
    #[error("term does not start with version byte 131 (got {0})")]
    BadVersion(u8),
    #[error("term truncated at byte {0}")]
    Truncated(usize),
    #[error("unsupported term tag {tag} at byte {offset}")]
    UnsupportedTag { tag: u8, offset: usize },
    #[error("term nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("term holds more than {MAX_TERMS} terms")]
    TooMany,
    #[error("{0} trailing bytes after the term")]
    Trailing(usize),
    #[error("malformed term at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("undecodable term: {0}")]
    Decode(String),
}

/// Checks that `bytes` hold exactly one well-formed term that `eetf` can
/// decode without panicking or over-allocating.
pub fn validate(bytes: &[u8]) -> Result<(), TermError> {
    let mut cur = Cursor { bytes, pos: 0 };
    match cur.u8() {
        Err(_) => return Err(TermError::Empty),
        Ok(VERSION) => {}
        Ok(other) => return Err(TermError::BadVersion(other)),
    }
    cur.skip_term(1)?;
    match bytes.len() - cur.pos {
        0 => Ok(()),
        n => Err(TermError::Trailing(n)),
    }
}

/// How deeply `term` nests: 1 for a term with nothing inside, one more for
/// each container (tuple, list, map) around its deepest part, as
/// [`decode`] counts against [`MAX_DEPTH`].
pub fn depth(term: &Term) -> usize {
    let inner = match term {
        Term::Tuple(t) => t.elements.iter().map(depth).max(),
        Term::List(l) => l.elements.iter().map(depth).max(),
        Term::ImproperList(l) => l.elements.iter().chain(std::iter::once(&*l.last)).map(depth).max(),
        Term::Map(m) => m.map.iter().map(|(k, v)| depth(k).max(depth(v))).max(),
        _ => return 1,
    };
    1 + inner.unwrap_or(0)
}

/// The name and second element of a frame shaped `{Name, X, ...}`, read
/// from its first bytes alone, whatever follows them: what a request that
/// cannot be decoded as a whole still says about who is waiting for an
/// answer. `None` when the frame does not start that way, or when `X` is
/// itself not a term `eetf` can decode.
pub fn request_head(bytes: &[u8]) -> Option<(String, Term)> {
    let mut cur = Cursor { bytes, pos: 0 };
    if cur.u8().ok()? != VERSION {
        return None;
    }
    let arity = match cur.u8().ok()? {
        104 => u64::from(cur.u8().ok()?),
        105 => cur.u32().ok()?,
        _ => return None,
    };
    if arity < 2 {
        return None;
    }
    let name = match cur.u8().ok()? {
        tag @ (100 | 118 | 115 | 119) => {
            let len = if tag == 100 || tag == 118 { cur.u16().ok()? } else { u64::from(cur.u8().ok()?) };
            let text = cur.take(len).ok()?;
            if tag == 100 || tag == 115 {
                text.iter().map(|&b| char::from(b)).collect()
            } else {
                String::from_utf8(text.to_vec()).ok()?
            }
        }
        _ => return None,
    };
    let start = cur.pos;
    cur.skip_term(1).ok()?;
    let mut second = Vec::with_capacity(1 + cur.pos - start);
    second.push(VERSION);
    second.extend_from_slice(&bytes[start..cur.pos]);
    Some((name, decode(&second).ok()?))
}
/// Validates and decodes one term.
pub fn decode(bytes: &[u8]) -> Result<Term, TermError> {
    validate(bytes)?;
    Term::decode(bytes).map_err(|e| TermError::Decode(e.to_string()))
}

/// Encodes one term.
pub fn encode(term: &Term) -> Vec<u8> {
    let mut out = Vec::new();
    let fixed;
    let term = if has_negative_in_list(term) {
        fixed = widen_negatives_in_lists(term);
        &fixed
    } else {
        term
    };
    // Encoding into a Vec fails only for terms eetf cannot represent, which
    // this program never builds.
    if let Err(e) = term.encode(&mut out) {
        out.clear();
        let fallback = tuple(vec![atom("encode_error"), binary(e.to_string())]);
        let _ = fallback.encode(&mut out);
    }
    out
}

/// eetf writes a list of small integers as a byte string and casts each to
/// `u8`, so `[-1]` would arrive as `[255]`. A negative element written as a
/// big integer keeps the list out of that path; the VM reads it back as a
/// small integer.
fn has_negative_in_list(term: &Term) -> bool {
    match term {
        Term::List(l) => l.elements.iter().any(|e| matches!(e, Term::FixInteger(i) if i.value < 0) || has_negative_in_list(e)),
        Term::ImproperList(l) => l.elements.iter().any(has_negative_in_list) || has_negative_in_list(&l.last),
        Term::Tuple(t) => t.elements.iter().any(has_negative_in_list),
        Term::Map(m) => m.map.iter().any(|(k, v)| has_negative_in_list(k) || has_negative_in_list(v)),
        _ => false,
    }
}

fn widen_negatives_in_lists(term: &Term) -> Term {
    match term {
        Term::List(l) => Term::from(List::from(
            l.elements
                .iter()
                .map(|e| match e {
                    Term::FixInteger(i) if i.value < 0 => Term::from(eetf::BigInteger::from(i.value)),
                    other => widen_negatives_in_lists(other),
                })
                .collect::<Vec<_>>(),
        )),
        Term::Tuple(t) => tuple(t.elements.iter().map(widen_negatives_in_lists).collect()),
        Term::Map(m) => Term::from(Map::from(
            m.map
                .iter()
                .map(|(k, v)| (widen_negatives_in_lists(k), widen_negatives_in_lists(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        )),
        Term::ImproperList(l) => Term::from(eetf::ImproperList::from((
            l.elements.iter().map(widen_negatives_in_lists).collect::<Vec<_>>(),
            widen_negatives_in_lists(&l.last),
        ))),
        other => other.clone(),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// Consumes `count` consecutive terms, nested ones included, within the
    /// depth and size bounds.
    fn skip_term(&mut self, count: u64) -> Result<(), TermError> {
        // Each stack entry counts the terms still to read at one nesting level.
        let mut pending: Vec<u64> = vec![count];
        let mut seen: u64 = 0;
        while let Some(top) = pending.last_mut() {
            if *top == 0 {
                pending.pop();
                continue;
            }
            *top -= 1;
            seen += 1;
            if seen > MAX_TERMS {
                return Err(TermError::TooMany);
            }
            let children = self.term_header()?;
            if children > 0 {
                if pending.len() > MAX_DEPTH {
                    return Err(TermError::TooDeep);
                }
                pending.push(children);
            }
        }
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<&[u8], TermError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(TermError::Truncated(self.bytes.len()));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn u8(&mut self) -> Result<u8, TermError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u64, TermError> {
        let b = self.take(2)?;
        Ok(u64::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<u64, TermError> {
        let b = self.take(4)?;
        Ok(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// Consumes one atom (pids, ports and references embed their node name).
    fn atom(&mut self) -> Result<(), TermError> {
        let offset = self.pos;
        match self.u8()? {
            tag @ (100 | 118 | 115 | 119) => self.atom_text(tag, offset),
            tag => Err(TermError::UnsupportedTag { tag, offset }),
        }
    }

    /// Consumes an atom's length and text, its tag already read. Like the
    /// VM, refuses an atom of more than 255 characters: nothing the VM sends
    /// holds one, and one would not survive the way back (eetf writes atoms
    /// as UTF-8, so a long Latin-1 one may not fit, and the VM refuses it).
    fn atom_text(&mut self, tag: u8, offset: usize) -> Result<(), TermError> {
        let len = match tag {
            100 | 118 => self.u16()?,
            _ => u64::from(self.u8()?),
        };
        let text = self.take(len)?;
        let chars = if tag == 118 || tag == 119 {
            // UTF-8 (validated by eetf): count the bytes that start a character.
            text.iter().filter(|b| (**b & 0xC0) != 0x80).count()
        } else {
            text.len()
        };
        if chars > MAX_ATOM_CHARS {
            return Err(TermError::Malformed { offset, what: "atom longer than 255 characters" });
        }
        Ok(())
    }

    /// Consumes one term's own bytes and returns how many nested terms follow.
    fn term_header(&mut self) -> Result<u64, TermError> {
        let offset = self.pos;
        let tag = self.u8()?;
        let children = match tag {
            97 => self.take(1).map(|_| 0)?,
            98 => self.take(4).map(|_| 0)?,
            70 => self.take(8).map(|_| 0)?,
            99 => self.take(31).map(|_| 0)?,
            100 | 118 | 115 | 119 => self.atom_text(tag, offset).map(|()| 0)?,
            104 => u64::from(self.u8()?),
            105 => self.u32()?,
            116 => self.u32()? * 2,
            106 => 0,
            107 => {
                let n = self.u16()?;
                self.take(n).map(|_| 0)?
            }
            // Elements plus the tail.
            108 => self.u32()? + 1,
            109 => {
                let n = self.u32()?;
                self.take(n).map(|_| 0)?
            }
            77 => {
                // eetf shifts the last byte by `8 - bits` (a panic or
                // garbage outside 1..=8); the VM refuses those too, except
                // 0 bits in 0 bytes.
                let n = self.u32()?;
                let bits = self.u8()?;
                let valid = if n == 0 { bits == 0 } else { (1..=8).contains(&bits) };
                if !valid {
                    return Err(TermError::Malformed { offset, what: "bit string whose last byte holds not 1 to 8 bits" });
                }
                self.take(n).map(|_| 0)?
            }
            110 => {
                let n = u64::from(self.u8()?);
                self.take(1 + n).map(|_| 0)?
            }
            111 => {
                let n = self.u32()?;
                self.take(1 + n).map(|_| 0)?
            }
            88 => {
                self.atom()?;
                self.take(12).map(|_| 0)?
            }
            103 => {
                self.atom()?;
                self.take(9).map(|_| 0)?
            }
            89 => {
                self.atom()?;
                self.take(8).map(|_| 0)?
            }
            102 => {
                self.atom()?;
                self.take(5).map(|_| 0)?
            }
            120 => {
                self.atom()?;
                self.take(12).map(|_| 0)?
            }
            101 => {
                self.atom()?;
                self.take(5).map(|_| 0)?
            }
            114 | 90 => {
                let words = self.u16()?;
                self.atom()?;
                let creation = if tag == 90 { 4 } else { 1 };
                self.take(creation + 4 * words).map(|_| 0)?
            }
            _ => return Err(TermError::UnsupportedTag { tag, offset }),
        };
        // Every nested term takes at least one byte: a count beyond what is
        // left cannot be honest, and refusing it here keeps eetf from
        // pre-allocating for it.
        if children > (self.bytes.len() - self.pos) as u64 {
            return Err(TermError::Truncated(self.bytes.len()));
        }
        Ok(children)
    }
}

/// `Atom` term.
pub fn atom(name: &str) -> Term {
    Term::from(Atom::from(name))
}

/// Binary term.
pub fn binary(bytes: impl Into<Vec<u8>>) -> Term {
    Term::from(Binary::from(bytes.into()))
}

/// Tuple term.
pub fn tuple(elements: Vec<Term>) -> Term {
    Term::from(Tuple::from(elements))
}

/// Integer term, small or big as the value needs.
pub fn integer(value: u64) -> Term {
    match i32::try_from(value) {
        Ok(small) => Term::from(FixInteger::from(small)),
        Err(_) => Term::from(eetf::BigInteger::from(value)),
    }
}

/// Map term with atom keys.
pub fn atom_map(entries: Vec<(&str, Term)>) -> Term {
    Term::from(Map::from(
        entries
            .into_iter()
            .map(|(k, v)| (atom(k), v))
            .collect::<std::collections::HashMap<_, _>>(),
    ))
}

/// List term.
pub fn list(elements: Vec<Term>) -> Term {
    Term::from(List::from(elements))
}

/// The name of an atom term.
pub fn as_atom(term: &Term) -> Option<&str> {
    match term {
        Term::Atom(a) => Some(&a.name),
        _ => None,
    }
}

/// A non-negative integer term as `u64`.
pub fn as_u64(term: &Term) -> Option<u64> {
    match term {
        Term::FixInteger(i) => u64::try_from(i.value).ok(),
        Term::BigInteger(b) => u64::try_from(&b.value).ok(),
        _ => None,
    }
}

/// The bytes of a binary term, or of a string (a list of bytes).
pub fn as_bytes(term: &Term) -> Option<&[u8]> {
    match term {
        Term::Binary(b) => Some(&b.bytes),
        Term::ByteList(b) => Some(&b.bytes),
        _ => None,
    }
}

/// A term written as Erlang would print it (`~p` style, on one line):
/// atoms quoted only when they must be, printable binaries as `<<"text">>`.
pub fn erlang_syntax(term: &Term) -> String {
    let mut w = Writer { out: String::new(), limit: usize::MAX };
    w.term(term);
    w.out
}

/// The first `limit` bytes (at a character boundary) of
/// [`erlang_syntax`]`(term)`, followed by `...` when it was longer, for error
/// messages about terms the VM should not have sent.
///
/// The work stops once `limit` is reached: a 16 MiB binary or a list of a
/// million elements costs what the shown part costs, not the rendering of
/// the whole term. Maps are printed with their keys sorted, as Erlang does,
/// which needs every entry; one too large to show in `limit` bytes anyway is
/// summarised by its size instead.
pub fn erlang_syntax_brief(term: &Term, limit: usize) -> String {
    let mut w = Writer { out: String::new(), limit };
    w.term(term);
    let mut s = w.out;
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Largest integer written out in decimal, which takes time quadratic in its
/// length; a larger one is shown as `<integer of N bits>`. 2^16 bits are
/// about 20,000 digits.
const MAX_WRITTEN_INTEGER_BITS: u64 = 1 << 16;

/// Writes terms in Erlang syntax until `out` holds more than `limit` bytes;
/// past that every write is skipped.
struct Writer {
    out: String,
    limit: usize,
}

impl Writer {
    fn full(&self) -> bool {
        self.out.len() > self.limit
    }

    fn push(&mut self, c: char) {
        if !self.full() {
            self.out.push(c);
        }
    }

    fn push_str(&mut self, s: &str) {
        if !self.full() {
            self.out.push_str(s);
        }
    }

    fn display(&mut self, value: impl std::fmt::Display) {
        use std::fmt::Write;
        if !self.full() {
            let _ = write!(self.out, "{value}");
        }
    }

    /// Writes `items` separated by commas, stopping once full.
    fn separated<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        for (i, item) in items.iter().enumerate() {
            if self.full() {
                return;
            }
            if i > 0 {
                self.push(',');
            }
            write(self, item);
        }
    }

    fn items(&mut self, items: &[Term]) {
        self.separated(items, Self::term);
    }

    fn byte_values(&mut self, bytes: &[u8]) {
        self.separated(bytes, |w, byte| w.display(byte));
    }

    fn term(&mut self, term: &Term) {
        if self.full() {
            return;
        }
        match term {
            Term::Atom(a) => self.atom(&a.name),
            Term::Binary(b) => self.binary(&b.bytes),
            Term::ByteList(b) => match std::str::from_utf8(&b.bytes) {
                Ok(text) if text.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => {
                    self.push('"');
                    for c in text.chars() {
                        if self.full() {
                            return;
                        }
                        // Rust's escapes, which match Erlang's for the
                        // characters allowed here; a quote needs none.
                        if c == '\'' {
                            self.push(c);
                        } else {
                            self.display(c.escape_debug());
                        }
                    }
                    self.push('"');
                }
                _ => {
                    self.push('[');
                    self.byte_values(&b.bytes);
                    self.push(']');
                }
            },
            Term::List(l) => {
                self.push('[');
                self.items(&l.elements);
                self.push(']');
            }
            Term::ImproperList(l) => {
                self.push('[');
                self.items(&l.elements);
                self.push('|');
                self.term(&l.last);
                self.push(']');
            }
            Term::Tuple(t) => {
                self.push('{');
                self.items(&t.elements);
                self.push('}');
            }
            Term::BigInteger(b) if b.value.bits() > MAX_WRITTEN_INTEGER_BITS => {
                self.display(format_args!("<integer of {} bits>", b.value.bits()));
            }
            Term::Map(m) => self.map(&m.map),
            Term::Pid(p) => self.display(format_args!("<{}.{}.{}>", p.node.name, p.id, p.serial)),
            Term::Reference(r) => {
                let ids: Vec<String> = r.id.iter().map(u32::to_string).collect();
                self.display(format_args!("#Ref<{}.{}>", r.node.name, ids.join(".")));
            }
            other => self.display(other),
        }
    }

    fn map(&mut self, map: &std::collections::HashMap<Term, Term>) {
        // The shortest entry, `k => v`, takes 6 bytes: past that count (and
        // a small floor) most entries could not be shown anyway.
        if self.limit != usize::MAX && map.len() > (self.limit / 6).max(64) {
            self.display(format_args!("#{{...{} entries...}}", map.len()));
            return;
        }
        let render = |t: &Term| {
            let mut w = Writer { out: String::new(), limit: self.limit };
            w.term(t);
            w.out
        };
        let mut entries: Vec<(String, String)> = map.iter().map(|(k, v)| (render(k), render(v))).collect();
        entries.sort();
        self.push_str("#{");
        self.separated(&entries, |w, (k, v)| {
            w.push_str(k);
            w.push_str(" => ");
            w.push_str(v);
        });
        self.push('}');
    }

    fn atom(&mut self, name: &str) {
        let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
        if plain {
            self.push_str(name);
            return;
        }
        self.push('\'');
        for c in name.chars() {
            if c == '\'' || c == '\\' {
                self.push('\\');
            }
            self.push(c);
        }
        self.push('\'');
    }

    fn binary(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')) => {
                self.push_str("<<\"");
                for c in text.chars() {
                    if self.full() {
                        return;
                    }
                    match c {
                        '"' => self.push_str("\\\""),
                        '\\' => self.push_str("\\\\"),
                        '\n' => self.push_str("\\n"),
                        '\r' => self.push_str("\\r"),
                        '\t' => self.push_str("\\t"),
                        c => self.push(c),
                    }
                }
                self.push_str("\">>");
            }
            _ => {
                self.push_str("<<");
                self.byte_values(bytes);
                self.push_str(">>");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_erlang_syntax() {
        let t = tuple(vec![
            atom("closed"),
            integer(7),
            atom("Hello world"),
            binary(b"GET / HTTP/1.1\r\n".to_vec()),
            binary(vec![0, 255]),
            atom_map(vec![("b", integer(2)), ("a", list(vec![]))]),
        ]);
        assert_eq!(
            erlang_syntax(&t),
            r#"{closed,7,'Hello world',<<"GET / HTTP/1.1\r\n">>,<<0,255>>,#{a => [],b => 2}}"#
        );
    }

    /// What `erlang_syntax_brief` must give: the full rendering cut at
    /// `limit` bytes (on a character boundary), marked when cut.
    fn cut(full: &str, limit: usize) -> String {
        if full.len() <= limit {
            return full.to_string();
        }
        let mut end = limit;
        while !full.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &full[..end])
    }

    #[test]
    fn brief_rendering_is_a_prefix_of_the_full_one() {
        let terms = [
            binary(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            binary((0..=255u8).collect::<Vec<u8>>()),
            Term::from(eetf::ByteList::from(b"it's \"quoted\"\n".to_vec())),
            list((0..100).map(integer).collect()),
            tuple(vec![atom("Hello world"), atom("o'k"), list(vec![tuple(vec![integer(1), binary(vec![0; 40])])])]),
            atom_map(vec![("b", integer(2)), ("a", list(vec![binary("é".repeat(30).into_bytes())]))]),
            Term::from(eetf::ImproperList::from((vec![integer(1), integer(2)], atom("tail")))),
            binary("ééééé".repeat(50).into_bytes()),
        ];
        for t in &terms {
            let full = erlang_syntax(t);
            for limit in [0, 1, 2, 5, 17, 64, 199, 200, 1000] {
                assert_eq!(erlang_syntax_brief(t, limit), cut(&full, limit), "limit {limit} of {full}");
            }
        }
    }

    /// `LARGE_BIG_EXT` of `n` bytes, all ones.
    fn big_of_bytes(n: usize) -> Term {
        let mut bytes = vec![131, 111];
        bytes.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        bytes.push(0);
        bytes.resize(bytes.len() + n, 0xff);
        decode(&bytes).unwrap()
    }

    #[test]
    fn huge_integers_are_shown_by_size() {
        // Writing a number in decimal takes time quadratic in its length, and
        // a 16 MiB frame can hold an integer of 134 million bits.
        let huge = big_of_bytes(1 << 20);
        assert_eq!(erlang_syntax_brief(&huge, 200), "<integer of 8388608 bits>");
        assert_eq!(erlang_syntax(&huge), "<integer of 8388608 bits>");
        // Up to the limit, integers are written out: 2^1024 - 1.
        let shown = erlang_syntax(&big_of_bytes(128));
        assert!(shown.starts_with("179769313486231590772930519078902473361797697894230657273430081157732675805500963132708477322407536021120113879871393357658789768814416622492847430639474124377767893424865485276302219601246094119453082952085005768838150682342462881473913110540827237163350510684586298239947245938479716304835356329624224137215"), "{shown}");
    }

    #[test]
    fn brief_rendering_of_huge_terms_is_short() {
        let big = binary(vec![b'a'; 16 << 20]);
        assert_eq!(erlang_syntax_brief(&big, 10), "<<\"aaaaaaa...");
        let long = list((0..1_000_000).map(|i| integer(i % 10)).collect());
        assert_eq!(erlang_syntax_brief(&long, 12), "[0,1,2,3,4,5...");
        let wide = Term::from(Map::from((0..100).map(|i| (integer(i), integer(i))).collect::<std::collections::HashMap<_, _>>()));
        assert_eq!(erlang_syntax_brief(&wide, 200), "#{...100 entries...}");
        assert!(erlang_syntax(&wide).starts_with("#{0 => 0,1 => 1,10 => 10,"));
    }

    fn enc(t: &Term) -> Vec<u8> {
        encode(t)
    }

    #[test]
    fn accepts_what_eetf_encodes() {
        let t = tuple(vec![
            atom("setup"),
            integer(u64::MAX),
            binary(b"code".to_vec()),
            list(vec![integer(1), atom_map(vec![("k", binary(vec![0u8; 300]))])]),
            Term::from(eetf::Pid::new("node@host", 1, 2, 3)),
            Term::from(eetf::Reference { node: eetf::Atom::from("node@host"), id: vec![1, 2, 3], creation: 4 }),
            Term::from(eetf::ByteList::from(vec![104, 105])),
            Term::from(eetf::Float::try_from(1.5).unwrap()),
        ]);
        assert_eq!(decode(&enc(&t)).unwrap(), t);
    }

    #[test]
    fn negative_integers_in_lists_survive_encoding() {
        let t = tuple(vec![list(vec![Term::from(FixInteger::from(-1)), integer(5)])]);
        let back = decode(&encode(&t)).unwrap();
        let Term::Tuple(outer) = back else { panic!("not a tuple") };
        let Term::List(l) = &outer.elements[0] else { panic!("not a list: {}", outer.elements[0]) };
        let values: Vec<i64> = l
            .elements
            .iter()
            .map(|e| match e {
                Term::FixInteger(i) => i64::from(i.value),
                Term::BigInteger(b) => i64::try_from(&b.value).unwrap(),
                other => panic!("not an integer: {other}"),
            })
            .collect();
        assert_eq!(values, vec![-1, 5]);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let t = tuple(vec![atom("a"), list(vec![binary(b"xyz".to_vec()), integer(7)])]);
        let bytes = enc(&t);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn forged_lengths_are_refused() {
        // A list claiming 4 billion elements, a binary claiming 4 GiB.
        assert_eq!(
            validate(&[131, 108, 0xff, 0xff, 0xff, 0xff, 106]),
            Err(TermError::Truncated(7))
        );
        assert_eq!(
            validate(&[131, 109, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(TermError::Truncated(7))
        );
        assert_eq!(
            validate(&[131, 116, 0x7f, 0xff, 0xff, 0xff]),
            Err(TermError::Truncated(6))
        );
    }

    #[test]
    fn tags_eetf_panics_on_are_refused() {
        assert_eq!(
            validate(&[131, 82, 0]),
            Err(TermError::UnsupportedTag { tag: 82, offset: 1 })
        );
        assert_eq!(
            validate(&[131, 68, 0]),
            Err(TermError::UnsupportedTag { tag: 68, offset: 1 })
        );
        assert!(matches!(
            validate(&[131, 80, 0, 0, 0, 1, 0]),
            Err(TermError::UnsupportedTag { tag: 80, .. })
        ));
    }

    /// Found by the `request` fuzz target: eetf shifts the last byte of a
    /// bit string by `8 - bits`, which overflows (a panic with overflow
    /// checks) for 0 or more than 8 bits, when decoding and when encoding.
    #[test]
    fn bit_strings_with_impossible_bit_counts_are_refused() {
        for bits in [0u8, 9, 48, 255] {
            let bytes = [131, 77, 0, 0, 0, 1, bits, 0xff];
            assert!(
                matches!(validate(&bytes), Err(TermError::Malformed { offset: 1, .. })),
                "{bits} bits accepted"
            );
        }
        assert!(matches!(validate(&[131, 77, 0, 0, 0, 0, 3]), Err(TermError::Malformed { .. })));
        assert!(validate(&[131, 77, 0, 0, 0, 0, 0]).is_ok(), "the empty bit string, as the VM reads it");
        for bits in 1..=8u8 {
            let t = decode(&[131, 77, 0, 0, 0, 2, bits, 0xab, 0xff]).unwrap();
            assert_eq!(decode(&encode(&t)).unwrap(), t, "{bits} bits");
        }
    }

    /// Found while triaging the `request` target's findings: an atom of up
    /// to 65535 bytes decoded, and a reply echoing it (in its `Ref`) was
    /// then refused by the VM's `binary_to_term` (atoms have at most 255
    /// characters), so the VM could never read its reply. The port refuses
    /// such atoms as the VM does.
    #[test]
    fn atoms_over_255_characters_are_refused() {
        let latin1 = |tag: u8, n: usize, c: u8| {
            let mut b = vec![131, tag, (n >> 8) as u8, n as u8];
            b.extend(std::iter::repeat_n(c, n));
            b
        };
        assert!(validate(&latin1(100, 255, 0xe9)).is_ok());
        assert_eq!(
            validate(&latin1(100, 256, b'a')),
            Err(TermError::Malformed { offset: 1, what: "atom longer than 255 characters" })
        );
        let long = latin1(100, 65535, 0xe9);
        assert!(matches!(validate(&long), Err(TermError::Malformed { .. })));
        // UTF-8: characters count, not bytes.
        let mut utf8 = vec![131, 118, 0, 0];
        utf8.extend("é".repeat(255).as_bytes());
        utf8[2..4].copy_from_slice(&(510u16).to_be_bytes());
        let t = decode(&utf8).expect("255 two-byte characters");
        assert_eq!(decode(&encode(&t)).unwrap(), t);
        let mut over = vec![131, 118, 0, 0];
        over.extend("é".repeat(256).as_bytes());
        over[2..4].copy_from_slice(&(512u16).to_be_bytes());
        assert!(matches!(validate(&over), Err(TermError::Malformed { .. })));
        // Node names inside pids count too.
        let mut pid = vec![131, 88];
        pid.extend(&latin1(100, 300, b'n')[1..]);
        pid.extend([0; 12]);
        assert!(matches!(validate(&pid), Err(TermError::Malformed { offset: 2, .. })));
    }

    #[test]
    fn more_terms_than_the_limit_are_refused_before_decoding() {
        // A flat list of empty lists: 5 bytes of header, 1 byte per element.
        let list = |n: u32| {
            let mut bytes = vec![VERSION, 108];
            bytes.extend_from_slice(&n.to_be_bytes());
            bytes.extend(std::iter::repeat_n(106u8, n as usize));
            bytes.push(106);
            bytes
        };
        // The list itself and its tail count too.
        assert!(validate(&list(MAX_TERMS as u32 - 2)).is_ok());
        assert_eq!(validate(&list(MAX_TERMS as u32 - 1)), Err(TermError::TooMany));
        assert_eq!(validate(&list(4_000_000)), Err(TermError::TooMany));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![131];
        for _ in 0..(MAX_DEPTH + 10) {
            bytes.extend([104, 1]);
        }
        bytes.push(106);
        assert_eq!(validate(&bytes), Err(TermError::TooDeep));
    }

    #[test]
    fn trailing_bytes_and_bad_version_are_refused() {
        assert_eq!(validate(&[131, 106, 0]), Err(TermError::Trailing(1)));
        assert_eq!(validate(&[130, 106]), Err(TermError::BadVersion(130)));
        assert_eq!(validate(&[]), Err(TermError::Empty));
    }

    #[test]
    fn the_head_of_an_undecodable_request_is_read() {
        // {call, 7, <<"m">>, <<"f">>, [[[...]]]} nested past the limit.
        let mut bytes = vec![131, 104, 5, 100, 0, 4, b'c', b'a', b'l', b'l', 97, 7];
        bytes.extend([109, 0, 0, 0, 1, b'm', 109, 0, 0, 0, 1, b'f']);
        for _ in 0..(MAX_DEPTH + 10) {
            bytes.extend([108, 0, 0, 0, 1]);
        }
        bytes.push(106);
        bytes.extend(std::iter::repeat_n(106u8, MAX_DEPTH + 10));
        assert_eq!(validate(&bytes), Err(TermError::TooDeep));
        assert_eq!(request_head(&bytes), Some(("call".to_string(), Term::from(FixInteger::from(7)))));
        // A tuple `{Ref, ...}` whose second element is cut short, or no tuple
        // at all, says nothing.
        assert_eq!(request_head(&bytes[..11]), None);
        assert_eq!(request_head(&[131, 106]), None);
        assert_eq!(request_head(&[131, 104, 1, 100, 0, 1, b'x']), None);
    }
}
