//! Erlang terms to Python values and back.
//!
//! One table (docs/protocol.md, "Terms and Python values") decides every
//! conversion; this module is that table in code. Terms come from the VM and
//! values from user code, so both directions refuse what has no counterpart
//! with a [`ConvertError`] naming it, bound nesting to [`MAX_DEPTH`] levels and
//! never panic.

use eetf::{Atom, BigInteger, Binary, FixInteger, Float, List, Map, Term, Tuple};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use pyo3::PyTypeInfo;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Deepest nesting of lists, tuples and maps/dicts converted in either
/// direction. A term or value at the top is at level 0; each container adds
/// one level.
pub const MAX_DEPTH: usize = 256;

/// Why a term or a Python value could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// An Erlang term with no row in the table (reference, port, fun,
    /// improper list, bit string); the text names the kind, with its article.
    #[error("{0} has no Python form")]
    NoPythonForm(&'static str),
    /// A Python value whose type has no row in the table.
    #[error("Python value of type '{0}' has no Erlang form")]
    NoErlangForm(String),
    /// Lists, tuples and maps nested more than [`MAX_DEPTH`] levels deep
    /// (this includes any self-referencing Python container).
    #[error("nesting deeper than {} levels", MAX_DEPTH)]
    TooDeep,
    /// `nan` or an infinity: Erlang floats are finite.
    #[error("the float {0} has no Erlang form (Erlang floats are finite)")]
    NonFiniteFloat(f64),
    /// A `str` that cannot be encoded as UTF-8 (it holds lone surrogates).
    #[error("Python str is not valid UTF-8: {0}")]
    InvalidStr(String),
    /// An Erlang map key whose Python form is unhashable (a list or a map,
    /// or a tuple holding one).
    #[error("a map key becomes an unhashable Python '{0}'")]
    UnhashableKey(String),
    /// Distinct Erlang map keys that become equal Python keys.
    #[error(
        "map keys collide in Python: {erlang} Erlang keys became {python} dict keys \
         (an atom and a binary of the same name, or 1, 1.0 and true, are one Python key)"
    )]
    MapKeysCollide {
        /// Keys in the Erlang map.
        erlang: usize,
        /// Keys left in the Python dict.
        python: usize,
    },
    /// Distinct dict keys that become equal Erlang terms.
    #[error(
        "dict keys collide in Erlang: {python} dict keys became {erlang} map keys \
         (str, bytes and bytearray of the same contents are one binary)"
    )]
    DictKeysCollide {
        /// Keys in the Python dict.
        python: usize,
        /// Keys left in the Erlang map.
        erlang: usize,
    },
    /// An integer too large for the external term format.
    #[error("integer of {0} bytes is too large for an Erlang term")]
    IntegerTooLarge(usize),
    /// An `erlang.Atom` longer than the VM allows.
    #[error("atom of {0} characters is longer than Erlang's limit of 255")]
    AtomTooLong(usize),
    /// Python raised while a value was being built or read.
    #[error("Python error during conversion: {0}")]
    Python(#[from] PyErr),
}

/// `erlang.Atom`: a `str` subclass for Erlang atoms. An atom from the VM
/// arrives as one, so it still compares, hashes, formats and indexes dicts
/// as its name does, and it goes back to the VM as the atom, not a binary.
/// Python code makes one with `erlang.atom(name)` or `erlang.Atom(name)`.
/// Defined in Python (pyo3 classes cannot subclass `str`), once per
/// interpreter.
pub fn atom_type(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    static ATOM: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    ATOM.get_or_try_init(py, || {
        let namespace = PyDict::new(py);
        py.run(
            c"class Atom(str):
    '''An Erlang atom: a str that converts back to an atom (at most 255 characters).'''
    __slots__ = ()
    __module__ = 'erlang'
",
            Some(&namespace),
            None,
        )?;
        let class = namespace.get_item("Atom")?.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("Atom"))?;
        Ok(class.cast_into::<pyo3::types::PyType>().map_err(PyErr::from)?.unbind())
    })
    .map(|t| t.bind(py))
}

/// Longest atom name, in characters, the VM accepts.
const MAX_ATOM_CHARS: usize = 255;

/// An Erlang pid, opaque to Python: it compares, hashes and converts back to
/// the same pid. Python code cannot create one.
#[pyclass(module = "erlang", name = "Pid", frozen)]
pub struct Pid {
    pid: eetf::Pid,
}

impl Pid {
    /// Wraps an Erlang pid.
    pub fn new(pid: eetf::Pid) -> Self {
        Self { pid }
    }

    /// The wrapped Erlang pid.
    pub fn pid(&self) -> &eetf::Pid {
        &self.pid
    }
}

#[pymethods]
impl Pid {
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> Bound<'py, PyAny> {
        let Ok(other) = other.cast::<Pid>() else {
            return py.NotImplemented().into_bound(py);
        };
        let equal = self.pid == other.get().pid;
        match op {
            CompareOp::Eq => PyBool::new(py, equal).to_owned().into_any(),
            CompareOp::Ne => PyBool::new(py, !equal).to_owned().into_any(),
            _ => py.NotImplemented().into_bound(py),
        }
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.pid.hash(&mut h);
        h.finish()
    }

    /// `<Pid node@host.Id.Serial.Creation>`.
    fn __repr__(&self) -> String {
        let p = &self.pid;
        format!("<Pid {}.{}.{}.{}>", p.node.name, p.id, p.serial, p.creation)
    }
}

/// Converts an Erlang term to a Python value, per the table in
/// docs/protocol.md.
pub fn term_to_py<'py>(py: Python<'py>, term: &Term) -> Result<Bound<'py, PyAny>, ConvertError> {
    to_py(py, term, 0)
}

/// Converts a Python value to an Erlang term, per the table in
/// docs/protocol.md.
pub fn py_to_term(obj: &Bound<'_, PyAny>) -> Result<Term, ConvertError> {
    to_term(obj, 0)
}

/// The level below `depth`, or [`ConvertError::TooDeep`].
fn enter(depth: usize) -> Result<usize, ConvertError> {
    if depth >= MAX_DEPTH {
        Err(ConvertError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

fn to_py<'py>(
    py: Python<'py>,
    term: &Term,
    depth: usize,
) -> Result<Bound<'py, PyAny>, ConvertError> {
    let value = match term {
        Term::Atom(a) => match a.name.as_str() {
            "true" => PyBool::new(py, true).to_owned().into_any(),
            "false" => PyBool::new(py, false).to_owned().into_any(),
            "none" | "nil" | "undefined" => py.None().into_bound(py),
            name => atom_type(py)?.call1((name,))?,
        },
        Term::FixInteger(i) => PyInt::new(py, i.value).into_any(),
        Term::BigInteger(b) => big_to_py(py, b)?,
        Term::Float(f) => PyFloat::new(py, f.value).into_any(),
        Term::Pid(p) => Bound::new(py, Pid::new(p.clone()))?.into_any(),
        Term::Binary(b) => binary_to_py(py, &b.bytes),
        Term::ByteList(l) => {
            // A string is a list: it counts as a level, as the list it
            // becomes does on the way back.
            enter(depth)?;
            PyList::new(py, l.bytes.iter())?.into_any()
        }
        Term::List(l) => {
            let depth = enter(depth)?;
            let items = l
                .elements
                .iter()
                .map(|t| to_py(py, t, depth))
                .collect::<Result<Vec<_>, _>>()?;
            PyList::new(py, items)?.into_any()
        }
        Term::Tuple(t) => {
            let depth = enter(depth)?;
            match t.elements.as_slice() {
                [Term::Atom(tag), Term::Binary(bin)] if tag.name == "bytes" => {
                    PyBytes::new(py, &bin.bytes).into_any()
                }
                elements => {
                    let items = elements
                        .iter()
                        .map(|t| to_py(py, t, depth))
                        .collect::<Result<Vec<_>, _>>()?;
                    PyTuple::new(py, items)?.into_any()
                }
            }
        }
        Term::Map(m) => {
            let depth = enter(depth)?;
            let dict = PyDict::new(py);
            for (k, v) in &m.map {
                let key = to_py(py, k, depth)?;
                let value = to_py(py, v, depth)?;
                if let Err(e) = dict.set_item(&key, value) {
                    return Err(if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
                        ConvertError::UnhashableKey(type_name(&key))
                    } else {
                        e.into()
                    });
                }
            }
            if dict.len() != m.map.len() {
                return Err(ConvertError::MapKeysCollide {
                    erlang: m.map.len(),
                    python: dict.len(),
                });
            }
            dict.into_any()
        }
        Term::Port(_) => return Err(ConvertError::NoPythonForm("a port")),
        Term::Reference(_) => return Err(ConvertError::NoPythonForm("a reference")),
        Term::ExternalFun(_) | Term::InternalFun(_) => {
            return Err(ConvertError::NoPythonForm("a fun"))
        }
        Term::ImproperList(_) => return Err(ConvertError::NoPythonForm("an improper list")),
        Term::BitBinary(_) => return Err(ConvertError::NoPythonForm("a bit string")),
    };
    Ok(value)
}

/// A binary is a `str` when it is valid UTF-8, `bytes` otherwise.
fn binary_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyAny> {
    match std::str::from_utf8(bytes) {
        Ok(s) => PyString::new(py, s).into_any(),
        Err(_) => PyBytes::new(py, bytes).into_any(),
    }
}

/// A bignum through its two's-complement bytes and `int.from_bytes`.
fn big_to_py<'py>(py: Python<'py>, b: &BigInteger) -> Result<Bound<'py, PyAny>, ConvertError> {
    if let Ok(small) = i64::try_from(&b.value) {
        return Ok(PyInt::new(py, small).into_any());
    }
    let bytes = PyBytes::new(py, &b.value.to_signed_bytes_le());
    let kwargs = PyDict::new(py);
    kwargs.set_item("signed", true)?;
    Ok(PyInt::type_object(py).call_method("from_bytes", (bytes, "little"), Some(&kwargs))?)
}

fn to_term(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Term, ConvertError> {
    if obj.is_none() {
        return Ok(Term::from(Atom::from("none")));
    }
    // `bool` before `int`: it is a subclass of it.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Term::from(Atom::from(if b.is_true() {
            "true"
        } else {
            "false"
        })));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_to_term(obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let value = f.value();
        return Float::try_from(value)
            .map(Term::from)
            .map_err(|_| ConvertError::NonFiniteFloat(value));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s
            .to_str()
            .map_err(|e| ConvertError::InvalidStr(e.to_string()))?;
        if obj.is_instance(atom_type(obj.py())?)? {
            if text.chars().count() > MAX_ATOM_CHARS {
                return Err(ConvertError::AtomTooLong(text.chars().count()));
            }
            return Ok(Term::from(Atom::from(text)));
        }
        return Ok(Term::from(Binary::from(text.as_bytes())));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Term::from(Binary::from(b.as_bytes())));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Term::from(Binary::from(b.to_vec())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        // `tobytes` copies in C order whatever the layout and format.
        let copy = obj.call_method0("tobytes")?;
        let copy = copy.cast::<PyBytes>().map_err(PyErr::from)?;
        return Ok(Term::from(Binary::from(copy.as_bytes())));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let depth = enter(depth)?;
        let mut elements = Vec::with_capacity(l.len());
        for item in l.iter() {
            elements.push(to_term(&item, depth)?);
        }
        return Ok(Term::from(List::from(elements)));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let depth = enter(depth)?;
        let mut elements = Vec::with_capacity(t.len());
        for item in t.iter() {
            elements.push(to_term(&item, depth)?);
        }
        return Ok(Term::from(Tuple::from(elements)));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let depth = enter(depth)?;
        // A snapshot: iterating the dict itself would panic if it changed.
        let items = d.items();
        let mut map = HashMap::with_capacity(items.len());
        for item in items.iter() {
            let pair = item.cast::<PyTuple>().map_err(PyErr::from)?;
            let key = to_term(&pair.get_item(0)?, depth)?;
            let value = to_term(&pair.get_item(1)?, depth)?;
            map.insert(key, value);
        }
        if map.len() != items.len() {
            return Err(ConvertError::DictKeysCollide {
                python: items.len(),
                erlang: map.len(),
            });
        }
        return Ok(Term::from(Map { map }));
    }
    if let Ok(p) = obj.cast::<Pid>() {
        return Ok(Term::from(p.get().pid().clone()));
    }
    Err(ConvertError::NoErlangForm(type_name(obj)))
}

/// Any Python int: a fixnum when it fits 32 bits, a bignum otherwise.
fn int_to_term(obj: &Bound<'_, PyAny>) -> Result<Term, ConvertError> {
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(match i32::try_from(v) {
            Ok(small) => Term::from(FixInteger::from(small)),
            Err(_) => Term::from(BigInteger::from(v)),
        });
    }
    // Larger than 64 bits: take its two's-complement bytes from `int`
    // itself (unbound methods, so no subclass override runs).
    let py = obj.py();
    let int_type = PyInt::type_object(py);
    let bits: usize = int_type.call_method1("bit_length", (obj,))?.extract()?;
    let len = bits / 8 + 1;
    let kwargs = PyDict::new(py);
    kwargs.set_item("signed", true)?;
    let bytes = int_type.call_method("to_bytes", (obj, len, "little"), Some(&kwargs))?;
    let bytes = bytes.cast::<PyBytes>().map_err(PyErr::from)?;
    big_from_twos_complement_le(bytes.as_bytes())
}

/// A bignum from little-endian two's-complement bytes.
///
/// eetf does not re-export `num_bigint`, so the value is built the way eetf
/// itself builds one: by decoding a `LARGE_BIG_EXT` (sign byte and
/// little-endian magnitude).
fn big_from_twos_complement_le(bytes: &[u8]) -> Result<Term, ConvertError> {
    const VERSION: u8 = 131;
    const LARGE_BIG_EXT: u8 = 111;
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        // Negate: invert every byte, then add one.
        let mut carry = true;
        for b in &mut magnitude {
            let (v, c) = (!*b).overflowing_add(u8::from(carry));
            *b = v;
            carry = c;
        }
    }
    while magnitude.last() == Some(&0) {
        magnitude.pop();
    }
    let len = u32::try_from(magnitude.len())
        .map_err(|_| ConvertError::IntegerTooLarge(magnitude.len()))?;
    let mut etf = Vec::with_capacity(magnitude.len() + 7);
    etf.push(VERSION);
    etf.push(LARGE_BIG_EXT);
    etf.extend_from_slice(&len.to_be_bytes());
    etf.push(u8::from(negative));
    etf.extend_from_slice(&magnitude);
    match Term::decode(etf.as_slice()) {
        Ok(term @ Term::BigInteger(_)) => Ok(term),
        _ => Err(ConvertError::IntegerTooLarge(magnitude.len())),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eetf::{BitBinary, ByteList, ExternalFun, ImproperList, InternalFun, Port, Reference};
    use std::ffi::CString;

    fn atom(name: &str) -> Term {
        Term::from(Atom::from(name))
    }
    fn int(v: i32) -> Term {
        Term::from(FixInteger::from(v))
    }
    fn bin(b: &[u8]) -> Term {
        Term::from(Binary::from(b))
    }
    fn list(v: Vec<Term>) -> Term {
        Term::from(List::from(v))
    }
    fn tuple(v: Vec<Term>) -> Term {
        Term::from(Tuple::from(v))
    }
    fn map(v: Vec<(Term, Term)>) -> Term {
        Term::from(Map {
            map: v.into_iter().collect(),
        })
    }
    fn pid(id: u32) -> Term {
        Term::from(eetf::Pid::new("node@host", id, 2, 3))
    }
    fn float(v: f64) -> Term {
        Term::from(Float::try_from(v).expect("finite"))
    }

    /// Python helpers: `same` compares values and their exact types, all
    /// the way down.
    const HELPERS: &str = r#"
def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b
"#;

    fn globals(py: Python<'_>) -> Bound<'_, PyDict> {
        let g = PyDict::new(py);
        g.set_item("Pid", py.get_type::<Pid>()).expect("Pid");
        g.set_item("Atom", atom_type(py).expect("Atom")).expect("Atom");
        g.set_item("ReactorBuffer", crate::python::buffer::reactor_buffer_type(py).expect("type"))
            .expect("ReactorBuffer");
        let code = CString::new(HELPERS).expect("no NUL");
        py.run(&code, Some(&g), None).expect("helpers");
        g
    }

    fn eval<'py>(py: Python<'py>, expr: &str) -> Bound<'py, PyAny> {
        let g = globals(py);
        let code = CString::new(expr).expect("no NUL");
        match py.eval(&code, Some(&g), None) {
            Ok(v) => v,
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    /// Runs statements with `v` bound to `value`.
    fn check(py: Python<'_>, value: &Bound<'_, PyAny>, code: &str) {
        let g = globals(py);
        g.set_item("v", value).expect("v");
        let code = CString::new(code).expect("no NUL");
        if let Err(e) = py.run(&code, Some(&g), None) {
            panic!("{e}");
        }
    }

    fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    /// The term converts to exactly (value and type) what `expected`
    /// evaluates to.
    fn assert_term_gives(py: Python<'_>, term: &Term, expected: &str) {
        let value = term_to_py(py, term).unwrap_or_else(|e| panic!("{term}: {e}"));
        let g = globals(py);
        g.set_item("v", &value).expect("v");
        let code = CString::new(format!("same(v, {expected})")).expect("no NUL");
        let same: bool = py
            .eval(&code, Some(&g), None)
            .and_then(|r| r.extract())
            .unwrap_or_else(|e| panic!("{expected}: {e}"));
        assert!(same, "{term} gave {value:?}, expected {expected}");
    }

    /// The Python value converts to a term equal to `expected`.
    fn assert_py_gives(py: Python<'_>, expr: &str, expected: &Term) {
        let value = eval(py, expr);
        let term = py_to_term(&value).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(&term, expected, "{expr}");
    }

    /// Bignums equal to fixnums, and strings, compare as the values they
    /// stand for (as Erlang sees them).
    fn normalize(t: &Term) -> Term {
        match t {
            Term::BigInteger(b) => match i32::try_from(&b.value) {
                Ok(v) => int(v),
                Err(_) => t.clone(),
            },
            Term::ByteList(l) => list(l.bytes.iter().map(|b| int(i32::from(*b))).collect()),
            Term::List(l) => list(l.elements.iter().map(normalize).collect()),
            Term::Tuple(l) => tuple(l.elements.iter().map(normalize).collect()),
            Term::Map(m) => map(m
                .map
                .iter()
                .map(|(k, v)| (normalize(k), normalize(v)))
                .collect()),
            other => other.clone(),
        }
    }

    fn nested_list(depth: usize) -> Term {
        let mut t = int(1);
        for _ in 0..depth {
            t = list(vec![t]);
        }
        t
    }

    #[test]
    fn scalars_to_python() {
        with_py(|py| {
            assert_term_gives(py, &int(0), "0");
            assert_term_gives(py, &int(-7), "-7");
            assert_term_gives(py, &int(i32::MAX), "2**31 - 1");
            assert_term_gives(py, &int(i32::MIN), "-2**31");
            assert_term_gives(py, &Term::from(BigInteger::from(5i64)), "5");
            assert_term_gives(py, &float(1.5), "1.5");
            assert_term_gives(py, &float(-0.0), "-0.0");
            assert_term_gives(py, &bin(b"hello"), "'hello'");
            assert_term_gives(py, &bin("héllo €".as_bytes()), "'héllo €'");
            assert_term_gives(py, &bin(b""), "''");
            assert_term_gives(py, &bin(b"\xff\x00abc"), "b'\\xff\\x00abc'");
            assert_term_gives(py, &bin(b"\xed\xa0\x80"), "b'\\xed\\xa0\\x80'");
            assert_term_gives(py, &tuple(vec![atom("bytes"), bin(b"abc")]), "b'abc'");
            assert_term_gives(py, &tuple(vec![atom("bytes"), bin(b"")]), "b''");
            assert_term_gives(py, &tuple(vec![atom("bytes"), int(1)]), "(Atom('bytes'), 1)");
            assert_term_gives(
                py,
                &tuple(vec![atom("bytes"), bin(b"a"), bin(b"b")]),
                "(Atom('bytes'), 'a', 'b')",
            );
            assert_term_gives(py, &atom("true"), "True");
            assert_term_gives(py, &atom("false"), "False");
            assert_term_gives(py, &atom("none"), "None");
            assert_term_gives(py, &atom("nil"), "None");
            assert_term_gives(py, &atom("undefined"), "None");
            assert_term_gives(py, &atom("ok"), "Atom('ok')");
            assert_term_gives(py, &atom("True"), "Atom('True')");
            assert_term_gives(py, &atom("ünïcode"), "Atom('ünïcode')");
        });
    }

    #[test]
    fn containers_to_python() {
        with_py(|py| {
            assert_term_gives(py, &Term::from(ByteList::from("abc")), "[97, 98, 99]");
            assert_term_gives(py, &Term::from(ByteList::from(Vec::new())), "[]");
            assert_term_gives(py, &list(vec![]), "[]");
            assert_term_gives(
                py,
                &list(vec![int(1), atom("a"), bin(b"b")]),
                "[1, Atom('a'), 'b']",
            );
            assert_term_gives(py, &tuple(vec![]), "()");
            assert_term_gives(py, &tuple(vec![int(1), list(vec![int(2)])]), "(1, [2])");
            assert_term_gives(py, &map(vec![]), "{}");
            assert_term_gives(
                py,
                &map(vec![
                    (atom("addr"), bin(b"127.0.0.1")),
                    (atom("port"), int(8080)),
                    (int(1), tuple(vec![atom("true"), atom("undefined")])),
                    (
                        tuple(vec![int(1), int(2)]),
                        map(vec![(bin(b"k"), float(2.5))]),
                    ),
                ]),
                "{'addr': '127.0.0.1', 'port': 8080, 1: (True, None), (1, 2): {'k': 2.5}}",
            );
        });
    }

    #[test]
    fn python_to_terms() {
        with_py(|py| {
            assert_py_gives(py, "None", &atom("none"));
            assert_py_gives(py, "True", &atom("true"));
            assert_py_gives(py, "False", &atom("false"));
            assert_py_gives(py, "0", &int(0));
            assert_py_gives(py, "-2**31", &int(i32::MIN));
            assert_py_gives(py, "2**31 - 1", &int(i32::MAX));
            assert_py_gives(py, "2**31", &Term::from(BigInteger::from(1i64 << 31)));
            assert_py_gives(py, "1.25", &float(1.25));
            assert_py_gives(py, "'héllo'", &bin("héllo".as_bytes()));
            assert_py_gives(py, "b'\\xff'", &bin(b"\xff"));
            assert_py_gives(py, "bytearray(b'ab')", &bin(b"ab"));
            assert_py_gives(py, "memoryview(b'abc')", &bin(b"abc"));
            assert_py_gives(py, "memoryview(b'abcdef')[::2]", &bin(b"ace"));
            assert_py_gives(py, "ReactorBuffer(b'xyz')", &bin(b"xyz"));
            assert_py_gives(py, "[]", &list(vec![]));
            assert_py_gives(
                py,
                "[1, [None]]",
                &list(vec![int(1), list(vec![atom("none")])]),
            );
            assert_py_gives(py, "()", &tuple(vec![]));
            assert_py_gives(py, "(1, 'a')", &tuple(vec![int(1), bin(b"a")]));
            assert_py_gives(
                py,
                "{'a': 1, 2: (True,)}",
                &map(vec![
                    (bin(b"a"), int(1)),
                    (int(2), tuple(vec![atom("true")])),
                ]),
            );
            // Subclasses convert as their base type.
            assert_py_gives(py, "__import__('enum').IntEnum('E', 'A B').B", &int(2));
            assert_py_gives(py, "type('S', (str,), {})('s')", &bin(b"s"));
            assert_py_gives(
                py,
                "__import__('collections').OrderedDict(a=1)",
                &map(vec![(bin(b"a"), int(1))]),
            );
            assert_py_gives(
                py,
                "__import__('collections').namedtuple('P', 'x y')(1, 2)",
                &tuple(vec![int(1), int(2)]),
            );
            assert_py_gives(py, "type('L', (list,), {})([1])", &list(vec![int(1)]));
        });
    }

    #[test]
    fn every_term_kind_round_trips() {
        with_py(|py| {
            let big = |s: &str| py_to_term(&eval(py, s)).expect("big int");
            let terms = vec![
                atom("hello"),
                atom("ünïcode"),
                tuple(vec![atom("ok"), map(vec![(atom("k"), atom("v"))])]),
                int(0),
                int(42),
                int(-42),
                int(i32::MAX),
                int(i32::MIN),
                big("2**31"),
                big("-2**31 - 1"),
                big("2**64 + 1"),
                big("-(10**100)"),
                float(3.25),
                float(-1e300),
                bin(b"text"),
                bin(b""),
                bin(b"\x80\x81"),
                atom("true"),
                atom("false"),
                atom("none"),
                pid(7),
                list(vec![]),
                list(vec![int(1), bin(b"two"), float(3.0)]),
                tuple(vec![]),
                tuple(vec![atom("true"), int(1)]),
                map(vec![]),
                map(vec![
                    (bin(b"a"), list(vec![int(1)])),
                    (int(2), map(vec![(pid(1), atom("none"))])),
                    (tuple(vec![int(1), bin(b"x")]), float(0.5)),
                ]),
                Term::from(ByteList::from("abc")),
                nested_list(50),
            ];
            for term in &terms {
                let value = term_to_py(py, term).unwrap_or_else(|e| panic!("{term}: {e}"));
                let back = py_to_term(&value).unwrap_or_else(|e| panic!("{term}: {e}"));
                assert_eq!(normalize(&back), normalize(term), "{term}");
            }
            // Where the table is not one-to-one, the way back is fixed.
            let one_way = [
                (atom("nil"), atom("none")),
                (atom("undefined"), atom("none")),
                (tuple(vec![atom("bytes"), bin(b"ab")]), bin(b"ab")),
                (Term::from(BigInteger::from(9i64)), int(9)),
            ];
            for (term, expected) in &one_way {
                let value = term_to_py(py, term).expect("to Python");
                assert_eq!(&py_to_term(&value).expect("back"), expected, "{term}");
            }
        });
    }

    #[test]
    fn atoms_are_str_and_go_back_as_atoms() {
        with_py(|py| {
            let value = term_to_py(py, &atom("ok")).expect("to Python");
            assert!(value.is_instance_of::<PyString>());
            assert_eq!(value.extract::<String>().expect("str"), "ok");
            assert!(value.eq("ok").expect("compare"));
            let made = atom_type(py).expect("Atom").call1(("made",)).expect("Atom('made')");
            assert_eq!(py_to_term(&made).expect("back"), atom("made"));
            let long = atom_type(py).expect("Atom").call1(("x".repeat(256),)).expect("long Atom");
            assert!(matches!(py_to_term(&long), Err(ConvertError::AtomTooLong(256))));
        });
    }

    #[test]
    fn python_values_round_trip() {
        with_py(|py| {
            for expr in [
                "None",
                "True",
                "False",
                "0",
                "-1",
                "2**31",
                "-2**31 - 1",
                "2**63 - 1",
                "2**63",
                "-2**63",
                "-2**63 - 1",
                "2**64 - 1",
                "2**64",
                "-2**64",
                "10**300",
                "-(7**999)",
                "-(2**1023)",
                "-(2**1024) + 1",
                "1.5",
                "-0.0",
                "1e308",
                "'ünïcode ☃'",
                "''",
                "b'\\xff\\xfe'",
                "[1, [2, (3, {'k': [None, True]})]]",
                "{1: 'a', 'b': 2.5, (1, 2): [], False: 0}",
                "[]",
                "()",
                "{}",
            ] {
                let value = eval(py, expr);
                let term = py_to_term(&value).unwrap_or_else(|e| panic!("{expr}: {e}"));
                let back = term_to_py(py, &term).unwrap_or_else(|e| panic!("{expr}: {e}"));
                let g = globals(py);
                g.set_item("a", &value).expect("a");
                g.set_item("b", &back).expect("b");
                let same: bool = py
                    .eval(c"same(a, b)", Some(&g), None)
                    .and_then(|r| r.extract())
                    .expect("same");
                assert!(same, "{expr} came back as {back:?}");
            }
            // bytes that are valid UTF-8 come back as str (a binary is
            // str when it can be).
            let back =
                term_to_py(py, &py_to_term(&eval(py, "b'abc'")).expect("term")).expect("value");
            check(py, &back, "assert v == 'abc' and type(v) is str, v");
        });
    }

    #[test]
    fn big_integers_match_python() {
        with_py(|py| {
            let mut exprs: Vec<String> = Vec::new();
            for k in [
                31, 32, 62, 63, 64, 65, 127, 128, 255, 256, 1000, 8191, 8192, 100_000,
            ] {
                for off in ["-1", "", "+1"] {
                    exprs.push(format!("2**{k}{off}"));
                    exprs.push(format!("-(2**{k}){off}"));
                }
            }
            exprs.push("12345678901234567890123456789".into());
            exprs.push("-98765432109876543210987654321".into());
            let bigints = exprs.len();
            for expr in &exprs {
                let value = eval(py, expr);
                let term = py_to_term(&value).unwrap_or_else(|e| panic!("{expr}: {e}"));
                // eetf's decimal rendering against Python's own (which
                // refuses more than 4300 digits by default).
                if !expr.contains("100000") {
                    let decimal: String = eval(py, &format!("'%d' % ({expr})"))
                        .extract()
                        .expect("str");
                    assert_eq!(term.to_string(), decimal, "{expr}");
                }
                let fits_i32 = value.extract::<i32>().is_ok();
                assert_eq!(matches!(term, Term::FixInteger(_)), fits_i32, "{expr}");
                let back = term_to_py(py, &term).expect("back");
                assert!(back.eq(&value).expect("eq"), "{expr}");
                assert!(back.is_exact_instance_of::<PyInt>(), "{expr}");
            }
            assert_eq!(bigints, 14 * 6 + 2);
            // A subclass overriding the methods used for bignums changes
            // nothing.
            let sneaky = eval(
                py,
                "type('I', (int,), {'to_bytes': lambda *a, **k: 1/0, \
                 'bit_length': lambda self: 1/0})(2**100)",
            );
            let term = py_to_term(&sneaky).expect("int subclass");
            assert_eq!(term.to_string(), "1267650600228229401496703205376");
        });
    }

    #[test]
    fn pids() {
        with_py(|py| {
            let p = pid(42);
            let value = term_to_py(py, &p).expect("pid");
            let value2 = term_to_py(py, &p).expect("pid");
            let other = term_to_py(py, &pid(43)).expect("pid");
            let g = globals(py);
            g.set_item("p", &value).expect("p");
            g.set_item("q", &value2).expect("q");
            g.set_item("o", &other).expect("o");
            py.run(
                cr#"
assert type(p) is Pid and type(p).__module__ == 'erlang' and type(p).__name__ == 'Pid'
assert p == q and not (p != q) and p is not q
assert p != o and not (p == o)
assert hash(p) == hash(q)
assert {p: 1}[q] == 1
assert len({p, q, o}) == 2
assert p != 'node@host' and p != None and not (p == 42)
assert repr(p) == '<Pid node@host.42.2.3>', repr(p)
for bad in (lambda: p < q, lambda: Pid(), lambda: Pid(1, 2)):
    try:
        bad()
    except TypeError:
        pass
    else:
        raise AssertionError('expected TypeError')
"#,
                Some(&g),
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let back = py_to_term(&value).expect("back");
            assert_eq!(back, p);
            let Term::Pid(inner) = &p else { panic!() };
            let cell = value.cast::<Pid>().expect("Pid");
            assert_eq!(cell.get().pid(), inner);
        });
    }

    #[test]
    fn depth_limit_both_ways() {
        with_py(|py| {
            assert!(term_to_py(py, &nested_list(MAX_DEPTH)).is_ok());
            let err = term_to_py(py, &nested_list(MAX_DEPTH + 1)).expect_err("too deep");
            assert!(matches!(err, ConvertError::TooDeep));
            assert_eq!(err.to_string(), "nesting deeper than 256 levels");
            // Tuples and maps count too.
            let mut t = int(0);
            for i in 0..=MAX_DEPTH {
                t = if i % 2 == 0 {
                    tuple(vec![t])
                } else {
                    map(vec![(int(1), t)])
                };
            }
            assert!(matches!(term_to_py(py, &t), Err(ConvertError::TooDeep)));
            // A too-deep part anywhere is found.
            let wide = list(vec![int(1), nested_list(MAX_DEPTH)]);
            assert!(matches!(term_to_py(py, &wide), Err(ConvertError::TooDeep)));

            let ok = eval(
                py,
                "(lambda: [v := [1]] and [v := [v] for _ in range(255)][-1])()",
            );
            assert!(py_to_term(&ok).is_ok());
            let deep = eval(
                py,
                "(lambda: [v := [1]] and [v := [v] for _ in range(256)][-1])()",
            );
            assert!(matches!(py_to_term(&deep), Err(ConvertError::TooDeep)));
            let deep_dict = eval(
                py,
                "(lambda: [v := {}] and [v := {'k': (v,)} for _ in range(130)][-1])()",
            );
            assert!(matches!(py_to_term(&deep_dict), Err(ConvertError::TooDeep)));
            // Self-reference ends at the limit instead of recursing forever.
            let cyclic = eval(py, "(lambda l: (l.append(l), l)[1])([])");
            assert!(matches!(py_to_term(&cyclic), Err(ConvertError::TooDeep)));
            let cyclic_dict = eval(py, "(lambda d: (d.__setitem__('me', d), d)[1])({})");
            assert!(matches!(
                py_to_term(&cyclic_dict),
                Err(ConvertError::TooDeep)
            ));
        });
    }

    /// Found by the `convert` fuzz target: a string (`STRING_EXT`, a
    /// `ByteList`) did not count as a level on the way in, but the list it
    /// becomes does on the way back, so 256 lists around a string converted
    /// to Python and the value could not be converted back.
    #[test]
    fn strings_count_as_a_level() {
        with_py(|py| {
            let string = || Term::from(ByteList::from(vec![0u8]));
            let mut t = string();
            for _ in 0..MAX_DEPTH {
                t = list(vec![t]);
            }
            assert!(matches!(term_to_py(py, &t), Err(ConvertError::TooDeep)));
            let mut t = string();
            for _ in 0..MAX_DEPTH - 1 {
                t = list(vec![t]);
            }
            let value = term_to_py(py, &t).expect("256 levels");
            let back = py_to_term(&value).expect("and back");
            assert_eq!(normalize(&back), normalize(&t));
        });
    }

    #[test]
    fn terms_without_python_form_are_refused() {
        with_py(|py| {
            let p = eetf::Pid::new("n@h", 1, 0, 0);
            let cases: Vec<(Term, &str)> = vec![
                (
                    Term::from(Reference {
                        node: Atom::from("n@h"),
                        id: vec![1, 2, 3],
                        creation: 1,
                    }),
                    "a reference has no Python form",
                ),
                (
                    Term::from(Port {
                        node: Atom::from("n@h"),
                        id: 5,
                        creation: 1,
                    }),
                    "a port has no Python form",
                ),
                (
                    Term::from(ExternalFun {
                        module: Atom::from("lists"),
                        function: Atom::from("map"),
                        arity: 2,
                    }),
                    "a fun has no Python form",
                ),
                (
                    Term::from(InternalFun::Old {
                        module: Atom::from("m"),
                        pid: p,
                        free_vars: vec![],
                        index: 0,
                        uniq: 0,
                    }),
                    "a fun has no Python form",
                ),
                (
                    Term::from(ImproperList::from((vec![int(1)], int(2)))),
                    "an improper list has no Python form",
                ),
                (
                    Term::from(BitBinary {
                        bytes: vec![0xff],
                        tail_bits_size: 3,
                    }),
                    "a bit string has no Python form",
                ),
            ];
            for (term, message) in cases {
                let err = term_to_py(py, &term).expect_err("refused");
                assert_eq!(err.to_string(), message);
                // Also when nested.
                let nested = map(vec![(atom("k"), list(vec![tuple(vec![term.clone()])]))]);
                let err = term_to_py(py, &nested).expect_err("refused");
                assert_eq!(err.to_string(), message);
            }
        });
    }

    #[test]
    fn python_values_without_erlang_form_are_refused() {
        with_py(|py| {
            for (expr, message) in [
                ("{1, 2}", "Python value of type 'set' has no Erlang form"),
                (
                    "frozenset()",
                    "Python value of type 'frozenset' has no Erlang form",
                ),
                (
                    "object()",
                    "Python value of type 'object' has no Erlang form",
                ),
                ("1j", "Python value of type 'complex' has no Erlang form"),
                (
                    "lambda: 0",
                    "Python value of type 'function' has no Erlang form",
                ),
                (
                    "range(3)",
                    "Python value of type 'range' has no Erlang form",
                ),
                (
                    "[1, (2, {'k': {3}})]",
                    "Python value of type 'set' has no Erlang form",
                ),
                (
                    "{(1,): Ellipsis}",
                    "Python value of type 'ellipsis' has no Erlang form",
                ),
                (
                    "float('nan')",
                    "the float NaN has no Erlang form (Erlang floats are finite)",
                ),
                (
                    "-float('inf')",
                    "the float -inf has no Erlang form (Erlang floats are finite)",
                ),
            ] {
                let err = py_to_term(&eval(py, expr)).expect_err(expr);
                assert_eq!(err.to_string(), message, "{expr}");
            }
            let err = py_to_term(&eval(py, "'a\\ud800b'")).expect_err("surrogate");
            assert!(matches!(err, ConvertError::InvalidStr(_)), "{err}");
            assert!(
                err.to_string().starts_with("Python str is not valid UTF-8"),
                "{err}"
            );
        });
    }

    #[test]
    fn colliding_and_unhashable_keys_are_refused() {
        with_py(|py| {
            let m = map(vec![(atom("foo"), int(1)), (bin(b"foo"), int(2))]);
            let err = term_to_py(py, &m).expect_err("collide");
            assert!(
                matches!(
                    err,
                    ConvertError::MapKeysCollide {
                        erlang: 2,
                        python: 1
                    }
                ),
                "{err}"
            );
            let m = map(vec![
                (int(1), int(1)),
                (float(1.0), int(2)),
                (atom("true"), int(3)),
            ]);
            assert!(matches!(
                term_to_py(py, &m),
                Err(ConvertError::MapKeysCollide {
                    erlang: 3,
                    python: 1
                })
            ));
            let m = map(vec![(list(vec![int(1)]), int(1))]);
            let err = term_to_py(py, &m).expect_err("unhashable");
            assert_eq!(
                err.to_string(),
                "a map key becomes an unhashable Python 'list'"
            );
            let m = map(vec![(map(vec![]), int(1))]);
            assert!(
                matches!(term_to_py(py, &m), Err(ConvertError::UnhashableKey(t)) if t == "dict")
            );
            let err = py_to_term(&eval(py, "{'a': 1, b'a': 2}")).expect_err("collide");
            assert!(
                matches!(
                    err,
                    ConvertError::DictKeysCollide {
                        python: 2,
                        erlang: 1
                    }
                ),
                "{err}"
            );
        });
    }
}
