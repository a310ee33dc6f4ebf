//! Erlang terms to Python values and back (`src/python/convert.rs`), in the
//! embedded interpreter: a frame's payload is decoded as the port decodes it
//! (`terms::decode`), converted with `term_to_py` (as `client_info` and
//! `call` arguments are), and the value converted back with `py_to_term` (as
//! results and `erlang.send` messages are).
//!
//! Asserts, against the table of docs/protocol.md written out below as a
//! model: a term that converts comes back as the table says (atoms as
//! binaries, `nil`/`undefined` as `none`, `{bytes, B}` as `B`, strings as
//! lists, ...); a refusal names a reason the term really has (a kind with no
//! Python form, nesting over the limit, an unhashable key, colliding keys);
//! Python never raises during a conversion; nothing panics.

#![no_main]

use std::collections::HashSet;

use eetf::{Atom, FixInteger, List, Map, Term, Tuple};
use libfuzzer_sys::fuzz_target;
use py_reactor_port::python::convert::{py_to_term, term_to_py, ConvertError, MAX_DEPTH};
use py_reactor_port::terms;
use pyo3::prelude::*;

mod common;
use common::canon;

/// The term the table says comes back from Python.
fn expected(term: &Term) -> Term {
    match term {
        Term::Atom(a) => match a.name.as_str() {
            "true" | "false" => term.clone(),
            "none" | "nil" | "undefined" => Term::from(Atom::from("none")),
            // Other atoms become erlang.Atom, which goes back as the atom.
            _ => term.clone(),
        },
        Term::ByteList(l) => Term::from(List::from(
            l.bytes
                .iter()
                .map(|b| Term::from(FixInteger::from(i32::from(*b))))
                .collect::<Vec<_>>(),
        )),
        Term::List(l) => Term::from(List::from(l.elements.iter().map(expected).collect::<Vec<_>>())),
        Term::Tuple(t) => match t.elements.as_slice() {
            [Term::Atom(tag), bin @ Term::Binary(_)] if tag.name == "bytes" => bin.clone(),
            elements => Term::from(Tuple::from(elements.iter().map(expected).collect::<Vec<_>>())),
        },
        Term::Map(m) => Term::from(Map::from(
            m.map
                .iter()
                .map(|(k, v)| (expected(k), expected(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        )),
        other => other.clone(),
    }
}

/// Containers nested in `term` (the term itself at level 0).
fn depth(term: &Term) -> usize {
    match term {
        Term::List(l) => 1 + l.elements.iter().map(depth).max().unwrap_or(0),
        Term::Tuple(t) => 1 + t.elements.iter().map(depth).max().unwrap_or(0),
        Term::Map(m) => 1 + m.map.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        // A string becomes a list.
        Term::ByteList(_) => 1,
        _ => 0,
    }
}

fn any(term: &Term, p: &dyn Fn(&Term) -> bool) -> bool {
    p(term)
        || match term {
            Term::List(l) => l.elements.iter().any(|t| any(t, p)),
            Term::Tuple(t) => t.elements.iter().any(|t| any(t, p)),
            Term::Map(m) => m.map.iter().any(|(k, v)| any(k, p) || any(v, p)),
            _ => false,
        }
}

/// A map key whose Python form is unhashable: a list or a map, or a tuple
/// holding one (but `{bytes, B}` is `bytes`).
fn unhashable(key: &Term) -> bool {
    match key {
        Term::List(_) | Term::ByteList(_) | Term::Map(_) => true,
        Term::Tuple(t) => {
            !matches!(t.elements.as_slice(), [Term::Atom(a), Term::Binary(_)] if a.name == "bytes")
                && t.elements.iter().any(unhashable)
        }
        _ => false,
    }
}

/// Some map whose keys are distinct terms but not distinct once converted
/// (by the table, or by Python's equality of 1, 1.0 and True).
fn may_collide(term: &Term) -> bool {
    any(term, &|t| match t {
        Term::Map(m) => {
            let keys: HashSet<String> = m.map.keys().map(|k| canon(&expected(k))).collect();
            keys.len() < m.map.len()
                || m.map.keys().any(|k| {
                    any(k, &|t| {
                        matches!(
                            t,
                            Term::Float(_) | Term::Atom(_) | Term::FixInteger(_) | Term::BigInteger(_)
                        )
                    })
                })
        }
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(term) = terms::decode(data) else { return };
    Python::initialize();
    Python::attach(|py| {
        let value = match term_to_py(py, &term) {
            Ok(v) => v,
            Err(e) => {
                let plausible = match &e {
                    ConvertError::NoPythonForm(_) => any(&term, &|t| {
                        matches!(
                            t,
                            Term::Port(_)
                                | Term::Reference(_)
                                | Term::ExternalFun(_)
                                | Term::InternalFun(_)
                                | Term::ImproperList(_)
                                | Term::BitBinary(_)
                        )
                    }),
                    ConvertError::TooDeep => depth(&term) > MAX_DEPTH,
                    ConvertError::UnhashableKey(_) => any(&term, &|t| match t {
                        Term::Map(m) => m.map.keys().any(unhashable),
                        _ => false,
                    }),
                    ConvertError::MapKeysCollide { .. } => may_collide(&term),
                    _ => false,
                };
                assert!(plausible, "term_to_py refused {} with {e}", terms::erlang_syntax(&term));
                return;
            }
        };
        match py_to_term(&value) {
            Ok(back) => {
                assert_eq!(
                    canon(&back),
                    canon(&expected(&term)),
                    "{} came back otherwise",
                    terms::erlang_syntax(&term)
                );
                // And it is a term the port can send.
                let again = terms::decode(&terms::encode(&back)).expect("a converted term encodes");
                assert_eq!(canon(&again), canon(&back));
            }
            Err(ConvertError::DictKeysCollide { .. }) => {
                assert!(
                    may_collide(&term),
                    "keys of {} collided on the way back",
                    terms::erlang_syntax(&term)
                );
            }
            // The decoder takes atoms of any length; the VM's limit is 255.
            Err(ConvertError::AtomTooLong(n)) => assert!(n > 255),
            Err(e) => panic!("{} converted to Python but not back: {e}", terms::erlang_syntax(&term)),
        }
    });
});
