//! Helpers shared by the fuzz targets.

use eetf::Term;

/// A canonical text for a term: equal for terms the VM cannot tell apart.
/// A string and a list of the same small integers are one term, so are a
/// big integer and a small one of the same value; map entries are sorted.
pub fn canon(term: &Term) -> String {
    let mut out = String::new();
    write(&mut out, term);
    out
}

fn write(out: &mut String, term: &Term) {
    use std::fmt::Write;
    let items = |out: &mut String, items: &[Term]| {
        for (i, t) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write(out, t);
        }
    };
    match term {
        Term::FixInteger(i) => {
            let _ = write!(out, "{}", i.value);
        }
        Term::BigInteger(b) => {
            let _ = write!(out, "{}", b.value);
        }
        Term::Float(f) => {
            let _ = write!(out, "float:{:x}", f.value.to_bits());
        }
        Term::Atom(a) => {
            let _ = write!(out, "atom:{:?}", a.name);
        }
        Term::Binary(b) => {
            let _ = write!(out, "<<{:?}>>", b.bytes);
        }
        Term::BitBinary(b) => {
            let _ = write!(out, "<<{:?}:{}>>", b.bytes, b.tail_bits_size);
        }
        Term::ByteList(l) => {
            out.push('[');
            let ints: Vec<String> = l.bytes.iter().map(u8::to_string).collect();
            out.push_str(&ints.join(","));
            out.push(']');
        }
        Term::List(l) => {
            out.push('[');
            items(out, &l.elements);
            out.push(']');
        }
        Term::ImproperList(l) => {
            out.push('[');
            items(out, &l.elements);
            out.push('|');
            write(out, &l.last);
            out.push(']');
        }
        Term::Tuple(t) => {
            out.push('{');
            items(out, &t.elements);
            out.push('}');
        }
        Term::Map(m) => {
            let mut entries: Vec<String> = m
                .map
                .iter()
                .map(|(k, v)| format!("{}=>{}", canon(k), canon(v)))
                .collect();
            entries.sort();
            out.push_str("#{");
            out.push_str(&entries.join(","));
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}
