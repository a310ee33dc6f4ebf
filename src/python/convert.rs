//! Erlang terms to Python values and back.
//!
//! One table (docs/protocol.md, "Terms and Python values") decides every
//! conversion; this module is that table in code. Terms come from the VM and
//! values from user code, so both directions refuse what has no counterpart
//! with a [`ConvertError`] naming it, bound nesting to [`MAX_DEPTH`] levels and
//! never panic.

use super::buffer::ReactorBuffer;
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
    /// Python raised while a value was being built or read.
    #[error("Python error during conversion: {0}")]
    Python(#[from] PyErr),
}

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
            name => PyString::new(py, name).into_any(),
        },
        Term::FixInteger(i) => PyInt::new(py, i.value).into_any(),
        Term::BigInteger(b) => big_to_py(py, b)?,
        Term::Float(f) => PyFloat::new(py, f.value).into_any(),
        Term::Pid(p) => Bound::new(py, Pid::new(p.clone()))?.into_any(),
        Term::Binary(b) => binary_to_py(py, &b.bytes),
        Term::ByteList(l) => PyList::new(py, l.bytes.iter())?.into_any(),
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
        let s = s
            .to_str()
            .map_err(|e| ConvertError::InvalidStr(e.to_string()))?;
        return Ok(Term::from(Binary::from(s.as_bytes())));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Term::from(Binary::from(b.as_bytes())));
    }
    if let Ok(r) = obj.cast::<ReactorBuffer>() {
        return Ok(Term::from(Binary::from(r.get().as_slice())));
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
