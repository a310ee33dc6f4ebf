//! `ReactorBuffer`: the zero-copy read buffer handed to `data_received`.
//!
//! The loop reads a connection into a `Vec<u8>` and moves that vector into a
//! `ReactorBuffer` without copying it. Python sees a read-only, `bytes`-like
//! object: it exports its memory through the buffer protocol (so
//! `memoryview(buf)`, `bytearray.extend(buf)`, `bytes(buf)` and `os.write(fd,
//! buf)` read the vector in place) and implements the common `bytes` methods
//! with the same results as `bytes`. Searching runs in Rust over the vector;
//! only `decode` goes through Python's codecs (on the buffer itself, still
//! without a copy).

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyBufferError, PyIndexError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyMemoryView, PySlice, PyString, PyTuple};
use pyo3::{ffi, PyTypeInfo};
use std::ffi::c_int;

/// A read-only, `bytes`-like view of data read from a connection.
///
/// The bytes live in a `Vec<u8>` that is moved in at construction and never
/// touched again: the class is `frozen` and no method takes `&mut self`, so
/// the vector's heap block stays where it is, unchanged, for as long as the
/// Python object lives. That is what makes lending it through the buffer
/// protocol sound.
#[pyclass(module = "erlang.reactor", name = "ReactorBuffer", frozen, sequence)]
pub struct ReactorBuffer {
    data: Vec<u8>,
}

impl ReactorBuffer {
    /// Wraps `data` without copying it.
    pub fn new(data: Vec<u8>) -> Self {
        Self { data }
    }

    /// The bytes held by this buffer.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }
}

#[pymethods]
impl ReactorBuffer {
    /// `ReactorBuffer(data)`: a buffer holding a copy of any bytes-like
    /// `data` (meant for tests; the port moves its read buffers in).
    #[new]
    fn py_new(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        match with_bytes_like(data, <[u8]>::to_vec)? {
            Some(data) => Ok(Self::new(data)),
            None => Err(PyTypeError::new_err(format!(
                "ReactorBuffer() argument must be a bytes-like object, not '{}'",
                type_name(data)
            ))),
        }
    }

    /// `ReactorBuffer._test_create(data)`: the name the original project
    /// gives its test constructor; the same as `ReactorBuffer(data)`.
    #[classmethod]
    fn _test_create(_cls: &Bound<'_, pyo3::types::PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::py_new(data)
    }

    /// Exports the bytes read-only, the way `bytes` does.
    ///
    /// # Safety
    ///
    /// Called by Python through the buffer protocol with a valid `view`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let data = slf.get().as_slice();
        let len = isize::try_from(data.len())
            .map_err(|_| PyOverflowError::new_err("buffer too large to export"))?;
        // SAFETY: `view` is non-null and points to a `Py_buffer` owned by
        // the caller (the buffer-protocol contract). `PyBuffer_FillInfo` is
        // CPython's helper for exporting one contiguous read-only block of
        // bytes; it refuses `PyBUF_WRITABLE` requests and stores a new strong
        // reference to `slf` in `view->obj`. The block it lends is the heap
        // buffer of `self.data`, which stays valid and unchanged while that
        // reference is held: the class is frozen (no `&mut` access from
        // Python), no Rust code mutates, grows or moves the vector after
        // construction, and the vector is only freed when the object is,
        // which cannot happen before `PyBuffer_Release` drops `view->obj`.
        // An empty vector's dangling pointer is fine with length 0.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut std::ffi::c_void,
                len,
                1,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: `view` is valid (checked above); on failure the
            // exporter must leave no reference in it.
            unsafe { (*view).obj = std::ptr::null_mut() };
            Err(PyErr::fetch(slf.py()))
        }
    }

    /// Nothing to release: the format string is static and the reference
    /// to `self` in the view is dropped by `PyBuffer_Release` itself.
    ///
    /// # Safety
    ///
    /// Called by Python through the buffer protocol.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// `buf[i]` gives an int, `buf[a:b:c]` gives `bytes`.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let len = isize::try_from(self.data.len())
                .map_err(|_| PyOverflowError::new_err("buffer too large"))?;
            let ind = slice.indices(len)?;
            let bytes = if ind.step == 1 {
                // `indices` clamps start and stop to 0..=len.
                let start = usize::try_from(ind.start).unwrap_or(0);
                let stop = usize::try_from(ind.stop).unwrap_or(0).max(start);
                PyBytes::new(py, &self.data[start..stop])
            } else {
                // `indices` guarantees that the `slicelength` visited
                // indices are in range; nothing past them is computed, so a
                // huge step cannot overflow.
                let out: Vec<u8> = (0..ind.slicelength)
                    .map_while(|k| {
                        let k = isize::try_from(k).ok()?;
                        let i = ind.start.checked_add(k.checked_mul(ind.step)?)?;
                        self.data.get(usize::try_from(i).ok()?).copied()
                    })
                    .collect();
                PyBytes::new(py, &out)
            };
            return Ok(bytes.into_any());
        }
        let Some(index) = as_index(key)? else {
            return Err(PyTypeError::new_err(format!(
                "byte indices must be integers or slices, not {}",
                type_name(key)
            )));
        };
        let index = match index {
            Index::Fits(i) => i,
            Index::Overflow(_) => {
                return Err(PyIndexError::new_err(format!(
                    "cannot fit '{}' into an index-sized integer",
                    type_name(key)
                )))
            }
        };
        let i = match usize::try_from(index) {
            Ok(i) => Some(i),
            Err(_) => self.data.len().checked_sub(index.unsigned_abs()),
        };
        match i.and_then(|i| self.data.get(i)) {
            Some(b) => Ok(b.into_pyobject(py)?.into_any()),
            None => Err(PyIndexError::new_err("index out of range")),
        }
    }

    /// A `bytes` copy of the contents.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }

    /// Compares by contents with `bytes` and other `ReactorBuffer`s. For
    /// `bytearray` and `memoryview` it returns `NotImplemented`, exactly as
    /// `bytes` does, and Python then asks the other side, which compares
    /// through the buffer protocol (with `memoryview`'s own format rules).
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ord = if let Ok(b) = other.cast::<PyBytes>() {
            self.data.as_slice().cmp(b.as_bytes())
        } else if let Ok(r) = other.cast::<ReactorBuffer>() {
            self.data.as_slice().cmp(r.get().as_slice())
        } else {
            return Ok(py.NotImplemented().into_bound(py));
        };
        Ok(PyBool::new(py, op.matches(ord)).to_owned().into_any())
    }

    /// The same hash as `bytes` with the same contents, so that a buffer
    /// finds a `bytes` key in a dict.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        let len = isize::try_from(self.data.len())
            .map_err(|_| PyOverflowError::new_err("buffer too large to hash"))?;
        // SAFETY: the pointer and length describe `self.data`, which is
        // borrowed for the duration of the call; `Py_HashBuffer` (CPython's
        // `_Py_HashBytes` before 3.14, the function `bytes.__hash__` uses)
        // only reads them.
        let h = unsafe { ffi::compat::Py_HashBuffer(self.data.as_ptr().cast(), len) };
        if h == -1 {
            Err(PyErr::fetch(py))
        } else {
            Ok(h)
        }
    }

    /// `ReactorBuffer(b'...')`, with the contents shown as `repr(bytes)`
    /// shows them.
    fn __repr__(&self) -> String {
        let mut s = String::with_capacity(self.data.len() + 20);
        s.push_str("ReactorBuffer(");
        bytes_repr_into(&mut s, &self.data);
        s.push(')');
        s
    }

    /// Iterates over the bytes as ints (through a memoryview: no copy).
    fn __iter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyMemoryView::from(slf.as_any())?.try_iter()?.into_any())
    }

    /// `x in buf`: a byte value (int) or a bytes-like subsequence.
    fn __contains__(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        if let Some(index) = as_index(item)? {
            let b = byte_value(index)?;
            return Ok(self.data.contains(&b));
        }
        match with_bytes_like(item, |sub| find(&self.data, sub).is_some())? {
            Some(found) => Ok(found),
            None => Err(bytes_like_required(item)),
        }
    }

    /// `buf + other`: concatenation with any bytes-like object, giving
    /// `bytes` (`bytes + buf` is handled by `bytes` itself).
    fn __add__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let joined = with_bytes_like(other, |o| {
            let mut v = Vec::with_capacity(self.data.len() + o.len());
            v.extend_from_slice(&self.data);
            v.extend_from_slice(o);
            v
        })?;
        match joined {
            Some(v) => Ok(PyBytes::new(py, &v).into_any()),
            None => Ok(py.NotImplemented().into_bound(py)),
        }
    }

    /// Like `bytes.startswith(prefix[, start[, end]])`; `prefix` may be a
    /// tuple of bytes-like objects.
    #[pyo3(signature = (prefix, start=None, end=None, /))]
    fn startswith(
        &self,
        prefix: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.tail_match("startswith", prefix, start, end, false)
    }

    /// Like `bytes.endswith(suffix[, start[, end]])`; `suffix` may be a
    /// tuple of bytes-like objects.
    #[pyo3(signature = (suffix, start=None, end=None, /))]
    fn endswith(
        &self,
        suffix: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.tail_match("endswith", suffix, start, end, true)
    }

    /// Like `bytes.find(sub[, start[, end]])`: lowest index or -1.
    #[pyo3(signature = (sub, start=None, end=None, /))]
    fn find(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<isize> {
        self.find_impl(sub, start, end, false)
    }

    /// Like `bytes.rfind(sub[, start[, end]])`: highest index or -1.
    #[pyo3(signature = (sub, start=None, end=None, /))]
    fn rfind(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<isize> {
        self.find_impl(sub, start, end, true)
    }

    /// Like `bytes.index(sub[, start[, end]])`: `find`, raising
    /// `ValueError` when absent.
    #[pyo3(signature = (sub, start=None, end=None, /))]
    fn index(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<isize> {
        match self.find_impl(sub, start, end, false)? {
            -1 => Err(PyValueError::new_err("subsection not found")),
            i => Ok(i),
        }
    }

    /// Like `bytes.rindex(sub[, start[, end]])`: `rfind`, raising
    /// `ValueError` when absent.
    #[pyo3(signature = (sub, start=None, end=None, /))]
    fn rindex(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<isize> {
        match self.find_impl(sub, start, end, true)? {
            -1 => Err(PyValueError::new_err("subsection not found")),
            i => Ok(i),
        }
    }

    /// Like `bytes.count(sub[, start[, end]])`: non-overlapping occurrences.
    #[pyo3(signature = (sub, start=None, end=None, /))]
    fn count(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let (s, e) = adjust_indices(slice_index(start)?, slice_index(end)?, self.data.len());
        let count_in = |sub: &[u8]| -> usize {
            if e < s {
                0
            } else if sub.is_empty() {
                e - s + 1
            } else {
                count(&self.data[s..e], sub)
            }
        };
        if let Some(n) = with_bytes_like(sub, count_in)? {
            return Ok(n);
        }
        match as_index(sub)? {
            Some(index) => Ok(count_in(&[byte_value(index)?])),
            None => Err(finds_byte_error(sub)),
        }
    }

    /// Like `bytes.split(sep=None, maxsplit=-1)`, giving a list of `bytes`.
    #[pyo3(signature = (sep=None, maxsplit=None))]
    fn split<'py>(
        &self,
        py: Python<'py>,
        sep: Option<&Bound<'py, PyAny>>,
        maxsplit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max = match maxsplit {
            None => usize::MAX,
            // Negative means no limit.
            Some(m) => usize::try_from(ssize_arg(m)?).unwrap_or(usize::MAX),
        };
        let parts = match sep.filter(|s| !s.is_none()) {
            None => split_whitespace(&self.data, max),
            Some(sep) => {
                let parts = with_bytes_like(sep, |sep| {
                    if sep.is_empty() {
                        None
                    } else {
                        Some(split_on(&self.data, sep, max))
                    }
                })?;
                match parts {
                    Some(Some(parts)) => parts,
                    Some(None) => return Err(PyValueError::new_err("empty separator")),
                    None => return Err(bytes_like_required(sep)),
                }
            }
        };
        PyList::new(py, parts.into_iter().map(|p| PyBytes::new(py, p)))
    }

    /// Like `bytes.strip([chars])`: ASCII whitespace, or the given bytes,
    /// removed from both ends.
    #[pyo3(signature = (chars=None, /))]
    fn strip<'py>(
        &self,
        py: Python<'py>,
        chars: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.strip_impl(py, chars, true, true)
    }

    /// Like `bytes.lstrip([chars])`.
    #[pyo3(signature = (chars=None, /))]
    fn lstrip<'py>(
        &self,
        py: Python<'py>,
        chars: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.strip_impl(py, chars, true, false)
    }

    /// Like `bytes.rstrip([chars])`.
    #[pyo3(signature = (chars=None, /))]
    fn rstrip<'py>(
        &self,
        py: Python<'py>,
        chars: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.strip_impl(py, chars, false, true)
    }

    /// Like `bytes.decode(encoding='utf-8', errors='strict')`. Decodes the
    /// buffer in place through Python's codecs (`str(buf, encoding,
    /// errors)`), so results and errors are those of `bytes.decode`.
    #[pyo3(signature = (encoding=None, errors=None))]
    fn decode<'py>(
        slf: &Bound<'py, Self>,
        encoding: Option<&Bound<'py, PyAny>>,
        errors: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let encoding = match encoding {
            Some(e) => e.clone(),
            None => PyString::new(py, "utf-8").into_any(),
        };
        let errors = match errors {
            Some(e) => e.clone(),
            None => PyString::new(py, "strict").into_any(),
        };
        PyString::type_object(py).call1((slf, encoding, errors))
    }

    /// A read-only `memoryview` on the buffer itself (no copy).
    fn memoryview<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        PyMemoryView::from(slf.as_any())
    }
}

impl ReactorBuffer {
    fn tail_match(
        &self,
        name: &str,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        at_end: bool,
    ) -> PyResult<bool> {
        let start = slice_index(start)?;
        let end = slice_index(end)?;
        let matches = |s: &[u8]| tail_matches(&self.data, s, start, end, at_end);
        if let Ok(tuple) = sub.cast::<PyTuple>() {
            for item in tuple.iter() {
                match with_bytes_like(&item, matches)? {
                    Some(true) => return Ok(true),
                    Some(false) => {}
                    None => return Err(bytes_like_required(&item)),
                }
            }
            return Ok(false);
        }
        with_bytes_like(sub, matches)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{name} first arg must be bytes or a tuple of bytes, not {}",
                type_name(sub)
            ))
        })
    }

    fn find_impl(
        &self,
        sub: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<isize> {
        let (s, e) = adjust_indices(slice_index(start)?, slice_index(end)?, self.data.len());
        let find_in = |sub: &[u8]| -> isize {
            if e < s || e - s < sub.len() {
                return -1;
            }
            let hay = &self.data[s..e];
            let pos = if reverse {
                rfind(hay, sub)
            } else {
                find(hay, sub)
            };
            // Positions are below the vector's length, which fits an isize.
            pos.map_or(-1, |p| (s + p) as isize)
        };
        if let Some(pos) = with_bytes_like(sub, find_in)? {
            return Ok(pos);
        }
        match as_index(sub)? {
            Some(index) => Ok(find_in(&[byte_value(index)?])),
            None => Err(finds_byte_error(sub)),
        }
    }

    fn strip_impl<'py>(
        &self,
        py: Python<'py>,
        chars: Option<&Bound<'py, PyAny>>,
        left: bool,
        right: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.data.as_slice();
        let strip_with = |is_strip: &dyn Fn(u8) -> bool| -> &[u8] {
            let mut a = 0;
            let mut b = data.len();
            if left {
                while a < b && is_strip(data[a]) {
                    a += 1;
                }
            }
            if right {
                while b > a && is_strip(data[b - 1]) {
                    b -= 1;
                }
            }
            &data[a..b]
        };
        let out = match chars.filter(|c| !c.is_none()) {
            None => strip_with(&is_space),
            Some(chars) => {
                let mut set = [false; 256];
                let ok = with_bytes_like(chars, |c| {
                    for &b in c {
                        set[usize::from(b)] = true;
                    }
                })?;
                if ok.is_none() {
                    return Err(bytes_like_required(chars));
                }
                strip_with(&|b| set[usize::from(b)])
            }
        };
        Ok(PyBytes::new(py, out))
    }
}

/// Runs `f` on the contents of a bytes-like object: directly for `bytes`
/// and `ReactorBuffer`, on a copy for anything else that exports a buffer
/// (`bytearray`, `memoryview`, `array`...), since their memory may change
/// under us. `Ok(None)` means `obj` is not bytes-like.
fn with_bytes_like<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<Option<R>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(f(b.as_bytes())));
    }
    if let Ok(r) = obj.cast::<ReactorBuffer>() {
        return Ok(Some(f(r.get().as_slice())));
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyInt>() {
        return Ok(None);
    }
    let view = match PyMemoryView::from(obj) {
        Ok(view) => view,
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => return Ok(None),
        Err(e) => return Err(e),
    };
    let copy = view.call_method0("tobytes")?;
    let copy = copy.cast::<PyBytes>()?;
    Ok(Some(f(copy.as_bytes())))
}

/// An index-like value (int or `__index__`), clamped the way CPython's
/// `PyNumber_AsSsize_t(obj, NULL)` clamps.
enum Index {
    Fits(isize),
    Overflow(isize),
}

/// `Some` when `obj` is an int or has `__index__`, like `PyIndex_Check`.
fn as_index(obj: &Bound<'_, PyAny>) -> PyResult<Option<Index>> {
    let int = if obj.is_instance_of::<PyInt>() {
        obj.clone()
    } else if obj.get_type().hasattr("__index__")? {
        obj.call_method0("__index__")?
    } else {
        return Ok(None);
    };
    match int.extract::<isize>() {
        Ok(i) => Ok(Some(Index::Fits(i))),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            if int.lt(0)? {
                Ok(Some(Index::Overflow(isize::MIN)))
            } else {
                Ok(Some(Index::Overflow(isize::MAX)))
            }
        }
        Err(e) => Err(e),
    }
}

/// An integer argument, as CPython's `n` format reads it.
fn ssize_arg(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    match as_index(obj)? {
        Some(Index::Fits(i)) => Ok(i),
        Some(Index::Overflow(_)) => Err(PyOverflowError::new_err(
            "Python int too large to convert to C ssize_t",
        )),
        None => Err(PyTypeError::new_err(format!(
            "'{}' object cannot be interpreted as an integer",
            type_name(obj)
        ))),
    }
}

/// The byte an int argument stands for, or bytes' own `ValueError`.
fn byte_value(index: Index) -> PyResult<u8> {
    match index {
        Index::Fits(i) => u8::try_from(i).ok(),
        Index::Overflow(_) => None,
    }
    .ok_or_else(|| PyValueError::new_err("byte must be in range(0, 256)"))
}

/// A `start`/`end` argument: `None` or an index, clamped on overflow.
fn slice_index(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<isize>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    match as_index(obj)? {
        Some(Index::Fits(i) | Index::Overflow(i)) => Ok(Some(i)),
        None => Err(PyTypeError::new_err(
            "slice indices must be integers or None or have an __index__ method",
        )),
    }
}

/// CPython's `ADJUST_INDICES`: negative values count from the end, `end` is
/// clamped to `len`. The returned `start` may exceed `end` (and `len`).
fn adjust_indices(start: Option<isize>, end: Option<isize>, len: usize) -> (usize, usize) {
    let clamp = |i: Option<isize>, default: usize| -> usize {
        match i {
            None => default,
            Some(i) if i >= 0 => i as usize,
            Some(i) => len.saturating_sub(i.unsigned_abs()),
        }
    };
    (clamp(start, 0), clamp(end, len).min(len))
}

/// CPython's `tailmatch`, for `startswith` (`at_end == false`) and
/// `endswith`.
fn tail_matches(
    data: &[u8],
    sub: &[u8],
    start: Option<isize>,
    end: Option<isize>,
    at_end: bool,
) -> bool {
    let (s, e) = adjust_indices(start, end, data.len());
    if s > e || e - s < sub.len() {
        return false;
    }
    let at = if at_end { e - sub.len() } else { s };
    &data[at..at + sub.len()] == sub
}

fn is_space(b: u8) -> bool {
    // `Py_ISSPACE`: space, \t, \n, \v, \f, \r.
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// First position of `needle` in `hay` (`Some(0)` for an empty needle).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(0),
        [b] => hay.iter().position(|x| x == b),
        [first, ..] => {
            let last_start = hay.len().checked_sub(needle.len())?;
            let mut i = 0;
            while i <= last_start {
                let off = hay[i..=last_start].iter().position(|x| x == first)?;
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None
        }
    }
}

/// Last position of `needle` in `hay` (`Some(hay.len())` for an empty
/// needle).
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(hay.len()),
        [b] => hay.iter().rposition(|x| x == b),
        _ => hay.windows(needle.len()).rposition(|w| w == needle),
    }
}

/// Non-overlapping occurrences of a non-empty `needle`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    if let [b] = needle {
        return hay.iter().filter(|x| *x == b).count();
    }
    let mut n = 0;
    let mut rest = hay;
    while let Some(i) = find(rest, needle) {
        n += 1;
        rest = &rest[i + needle.len()..];
    }
    n
}

/// `bytes.split(sep, maxsplit)` for a non-empty `sep`.
fn split_on<'a>(data: &'a [u8], sep: &[u8], max: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < max {
        match find(rest, sep) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + sep.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

/// `bytes.split(None, maxsplit)`: runs of ASCII whitespace separate, and
/// leading/trailing whitespace gives no empty parts.
fn split_whitespace(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let n = data.len();
    let mut i = 0;
    while parts.len() < max {
        while i < n && is_space(data[i]) {
            i += 1;
        }
        if i == n {
            break;
        }
        let j = i;
        while i < n && !is_space(data[i]) {
            i += 1;
        }
        parts.push(&data[j..i]);
    }
    if i < n {
        // Only when `max` was reached: the rest, after its leading spaces.
        while i < n && is_space(data[i]) {
            i += 1;
        }
        if i < n {
            parts.push(&data[i..]);
        }
    }
    parts
}

/// Appends `repr(bytes(data))` to `out`, byte for byte as CPython writes it.
fn bytes_repr_into(out: &mut String, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &c in data {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if char::from(c) == quote => {
                out.push('\\');
                out.push(quote);
            }
            c if !(0x20..0x7f).contains(&c) => {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xf)]));
            }
            c => out.push(char::from(c)),
        }
    }
    out.push(quote);
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

fn bytes_like_required(obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "a bytes-like object is required, not '{}'",
        type_name(obj)
    ))
}

fn finds_byte_error(obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "argument should be integer or bytes-like object, not '{}'",
        type_name(obj)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::buffer::PyUntypedBuffer;
    use pyo3::types::PyDict;
    use std::ffi::CString;

    /// Runs every expression on `bytes` and on a `ReactorBuffer` of the same
    /// samples and lists where the outcomes (value and type, or exception
    /// type and message) differ. An expression starting with `~` compares
    /// exceptions by type only.
    const HARNESS: &str = r#"
import os
SAMPLES = [
    b'', b'a', b'abc', b'aaaa', b'abababab', b'ab\x00ab',
    b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    b'  a  b\tc\n\x0bd\x0c e \x1c f  ', b' \t\r\n ',
    b'\x0b\x0c x\x1c\x1f \x0c\x0b', b'\x1cx\x1d',
    b"it's", b'say "hi"', b'both \' and "', b'\xff\xfe\x00caf\xc3\xa9',
    bytes(range(256)),
]
def _outcome(expr, d, loose):
    try:
        r = eval(expr, {'d': d, 'RB': ReactorBuffer, 'os': os})
    except Exception as e:
        msg = None if loose else str(e).replace('erlang.reactor.ReactorBuffer', 'bytes').replace('ReactorBuffer', 'bytes')
        return ('raise', type(e).__name__, msg)
    return ('ok', type(r).__name__, r)
def compare(exprs):
    bad = []
    for data in SAMPLES:
        for expr in exprs:
            loose = expr.startswith('~')
            e = expr.lstrip('~')
            want = _outcome(e, data, loose)
            got = _outcome(e, ReactorBuffer(data), loose)
            if want != got:
                bad.append(f'{data!r}: {e}: bytes gives {want!r}, ReactorBuffer gives {got!r}')
    return bad
"#;

    fn with_harness<R>(f: impl FnOnce(Python<'_>, &Bound<'_, PyDict>) -> R) -> R {
        Python::initialize();
        Python::attach(|py| {
            let globals = PyDict::new(py);
            globals
                .set_item("ReactorBuffer", py.get_type::<ReactorBuffer>())
                .expect("set ReactorBuffer");
            let code = CString::new(HARNESS).expect("no NUL");
            py.run(&code, Some(&globals), None).expect("harness runs");
            f(py, &globals)
        })
    }

    fn mismatches(exprs: &[String]) -> Vec<String> {
        with_harness(|_py, globals| {
            let compare = globals
                .get_item("compare")
                .expect("lookup")
                .expect("compare");
            compare
                .call1((exprs.to_vec(),))
                .expect("compare runs")
                .extract()
                .expect("list of str")
        })
    }

    fn assert_same_as_bytes(exprs: &[String]) {
        assert!(!exprs.is_empty());
        let bad = mismatches(exprs);
        assert!(
            bad.is_empty(),
            "{} cases ({} expressions on each sample) differ from bytes, e.g.:\n{}",
            bad.len(),
            exprs.len(),
            bad.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
        );
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Python code to run (statements) with `ReactorBuffer` in scope.
    fn run(code: &str) {
        with_harness(|py, globals| {
            let code = CString::new(code).expect("no NUL");
            if let Err(e) = py.run(&code, Some(globals), None) {
                panic!("{e}");
            }
        })
    }

    const INDICES: &[&str] = &["None", "-100", "-3", "-1", "0", "1", "2", "3", "5", "100"];

    /// `d.meth(arg)`, `d.meth(arg, s)` and `d.meth(arg, s, e)` over INDICES.
    fn with_ranges(meth: &str, args: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for a in args {
            out.push(format!("d.{meth}({a})"));
            for s in INDICES {
                out.push(format!("d.{meth}({a}, {s})"));
                for e in INDICES {
                    out.push(format!("d.{meth}({a}, {s}, {e})"));
                }
            }
        }
        out
    }

    #[test]
    fn harness_detects_differences() {
        // One difference per sample: the type, not the length.
        let bad = mismatches(&strs(&["type(d).__name__", "len(d)"]));
        let samples: usize = with_harness(|_py, g| {
            g.get_item("SAMPLES")
                .expect("lookup")
                .expect("SAMPLES")
                .len()
                .expect("len")
        });
        assert_eq!(bad.len(), samples, "{bad:?}");
        assert!(
            bad.iter().all(|b| b.contains("type(d).__name__")),
            "{bad:?}"
        );
    }

    #[test]
    fn new_and_as_slice_keep_the_vector() {
        let v = b"hello".to_vec();
        let ptr = v.as_ptr();
        let buf = ReactorBuffer::new(v);
        assert_eq!(buf.as_slice(), b"hello");
        assert_eq!(buf.as_slice().as_ptr(), ptr, "moved, not copied");
    }

    #[test]
    fn len_and_truth() {
        assert_same_as_bytes(&strs(&["len(d)", "bool(d)", "not d"]));
    }

    #[test]
    fn indexing() {
        let mut exprs: Vec<String> = (-260..260).map(|i| format!("d[{i}]")).collect();
        exprs.extend(strs(&[
            "d[10**20]",
            "d[-10**20]",
            "d['x']",
            "d[1.0]",
            "d[True]",
            "d[None]",
        ]));
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn slicing() {
        let bounds = [
            "", "-300", "-7", "-3", "-1", "0", "1", "2", "5", "100", "10**30",
        ];
        let steps = ["", "1", "2", "3", "-1", "-2", "-5", "10**30", "0"];
        let mut exprs = Vec::new();
        for a in bounds {
            for b in bounds {
                for s in steps {
                    exprs.push(format!("d[{a}:{b}:{s}]"));
                }
            }
        }
        exprs.push("d['a':]".into());
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn conversions_use_the_buffer_protocol() {
        assert_same_as_bytes(&strs(&[
            "bytes(d)",
            "bytearray(d)",
            "memoryview(d).tobytes()",
            "memoryview(d).readonly",
            "memoryview(d).format",
            "memoryview(d).itemsize",
            "memoryview(d).nbytes",
            "memoryview(d).shape",
            "memoryview(d).strides",
            "memoryview(d).contiguous",
            "memoryview(d).cast('c').tobytes()",
            "list(memoryview(d))",
            "memoryview(d)[1:3].tobytes()",
            "(lambda b: (b.extend(d), b)[1])(bytearray(b'pre'))",
            "b'<' + d",
            "bytearray(b'<') + d",
            "d + b'>'",
            "d + bytearray(b'>')",
            "d + memoryview(b'>')",
            "~d + 'x'",
            "~d + 1",
            "b''.join([d, d])",
            "b'-'.join([d, b'x'])",
            "__import__('hashlib').sha256(d).hexdigest()",
            "__import__('zlib').crc32(d)",
            "__import__('ctypes').c_char.from_buffer(d)",
            "(lambda m: m.__setitem__(0, 1))(memoryview(d))",
            "__import__('struct').unpack_from('B', d) if d else 0",
        ]));
    }

    #[test]
    fn os_write_reads_the_buffer() {
        run(r#"
import os
r, w = os.pipe()
try:
    data = b'x' * 1000 + bytes(range(256))
    assert os.write(w, ReactorBuffer(data)) == len(data)
    got = b''
    while len(got) < len(data):
        got += os.read(r, 65536)
    assert got == data, got
finally:
    os.close(r)
    os.close(w)
"#);
    }

    #[test]
    fn buffer_is_lent_not_copied_and_read_only() {
        Python::initialize();
        Python::attach(|py| {
            let obj = Bound::new(py, ReactorBuffer::new(b"GET /".to_vec())).expect("new");
            let data_ptr = obj.get().as_slice().as_ptr();
            let view = PyUntypedBuffer::get(obj.as_any()).expect("buffer");
            assert_eq!(view.buf_ptr() as *const u8, data_ptr);
            assert!(view.readonly());
            assert_eq!(view.len_bytes(), 5);
            assert_eq!(view.format().to_bytes(), b"B");
            drop(view);
            let mv = ReactorBuffer::memoryview(&obj).expect("memoryview()");
            let mv_view = PyUntypedBuffer::get(mv.as_any()).expect("buffer");
            assert_eq!(mv_view.buf_ptr() as *const u8, data_ptr);
            assert!(mv.getattr("obj").expect("obj").is(&obj));
            assert!(mv
                .getattr("readonly")
                .expect("ro")
                .extract::<bool>()
                .expect("bool"));
            // An empty buffer exports fine too.
            let empty = Bound::new(py, ReactorBuffer::new(Vec::new())).expect("new");
            let v = PyUntypedBuffer::get(empty.as_any()).expect("buffer");
            assert_eq!(v.len_bytes(), 0);
        });
    }

    #[test]
    fn views_keep_the_buffer_alive_and_release_it() {
        run(r#"
import sys, gc
rb = ReactorBuffer(b'abcdef')
base = sys.getrefcount(rb)
mv = memoryview(rb)
assert sys.getrefcount(rb) == base + 1
mv2 = rb.memoryview()
assert sys.getrefcount(rb) == base + 2
assert mv2[:3] == b'abc' and mv2.obj is rb
mv.release(); mv2.release()
assert sys.getrefcount(rb) == base, (sys.getrefcount(rb), base)
mv = memoryview(ReactorBuffer(b'xyz' * 1000))
gc.collect()
assert mv.tobytes() == b'xyz' * 1000
"#);
    }

    #[test]
    fn comparisons() {
        let others = [
            "b''",
            "b'a'",
            "b'abc'",
            "b'abd'",
            "b'ab'",
            "b'GET'",
            "bytes(range(256))",
            "bytearray(b'abc')",
            "bytearray(b'')",
            "memoryview(b'abc')",
            "memoryview(b'a')",
            "RB(b'abc')",
            "RB(b'')",
            "RB(b'a')",
            "'abc'",
            "1",
            "None",
            "[97]",
            "memoryview(__import__('array').array('B', b'abc'))",
            "memoryview(__import__('array').array('i', [1]))",
        ];
        let mut exprs = Vec::new();
        for o in others {
            for op in ["==", "!=", "<", "<=", ">", ">="] {
                exprs.push(format!("d {op} {o}"));
                exprs.push(format!("{o} {op} d"));
            }
        }
        exprs.push("d == d".into());
        exprs.push("d == bytes(d)".into());
        exprs.push("RB(bytes(d)) == d".into());
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn hash_matches_bytes() {
        assert_same_as_bytes(&strs(&[
            "hash(d)",
            "{bytes(d): 'found'}.get(d)",
            "{d: 'found'}.get(bytes(d))",
            "len({d, bytes(d)})",
        ]));
    }

    #[test]
    fn contains() {
        let mut exprs = Vec::new();
        for x in [
            "b''",
            "b'a'",
            "b'ab'",
            "b'abc'",
            "b'zz'",
            "b'\\r\\n'",
            "97",
            "0",
            "255",
            "256",
            "-1",
            "10**30",
            "True",
            "'a'",
            "None",
            "1.0",
            "bytearray(b'b')",
            "memoryview(b'bc')",
            "RB(b'a')",
        ] {
            exprs.push(format!("{x} in d"));
            exprs.push(format!("{x} not in d"));
        }
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn startswith_and_endswith() {
        let args = [
            "b''",
            "b'a'",
            "b'ab'",
            "b'abc'",
            "b'x'",
            "b'GET'",
            "b'\\r\\n'",
            "(b'x', b'a')",
            "()",
            "(b'zz', b'')",
            "bytearray(b'a')",
            "memoryview(b'b')",
            "RB(b'a')",
            "'a'",
            "1",
            "(b'a', 1)",
            "(1, b'a')",
            "None",
        ];
        let mut exprs = with_ranges("startswith", &args);
        exprs.extend(with_ranges("endswith", &args));
        exprs.extend(strs(&[
            "d.startswith(b'a', 'x')",
            "d.startswith(b'a', 1.0)",
            "d.startswith(b'', 10**30)",
            "d.endswith(b'', -10**30, 10**30)",
            "~d.startswith()",
            "~d.startswith(prefix=b'a')",
        ]));
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn find_rfind_index_rindex_count() {
        let args = [
            "b''",
            "b'a'",
            "b'b'",
            "b'ab'",
            "b'aa'",
            "b'abc'",
            "b'zz'",
            "b'\\r\\n'",
            "b'\\r\\n\\r\\n'",
            "97",
            "98",
            "0",
            "255",
            "256",
            "-1",
            "10**30",
            "True",
            "'a'",
            "1.0",
            "None",
            "bytearray(b'a')",
            "memoryview(b'ab')",
            "RB(b'b')",
        ];
        let mut exprs = Vec::new();
        for meth in ["find", "rfind", "index", "rindex", "count"] {
            exprs.extend(with_ranges(meth, &args));
            exprs.push(format!("d.{meth}(b'a', 'x')"));
            exprs.push(format!("~d.{meth}()"));
        }
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn split() {
        let seps = [
            "None",
            "b' '",
            "b'a'",
            "b'ab'",
            "b'\\r\\n'",
            "b''",
            "'a'",
            "1",
            "bytearray(b'b')",
            "memoryview(b'a')",
            "RB(b'b')",
        ];
        let mut exprs = vec!["d.split()".to_string()];
        for sep in seps {
            exprs.push(format!("d.split({sep})"));
            exprs.push(format!("d.split(sep={sep})"));
            for max in ["-5", "-1", "0", "1", "2", "3", "100", "10**30"] {
                exprs.push(format!("d.split({sep}, {max})"));
                exprs.push(format!("d.split(sep={sep}, maxsplit={max})"));
            }
        }
        for max in ["0", "1", "2"] {
            exprs.push(format!("d.split(maxsplit={max})"));
        }
        exprs.push("d.split(maxsplit='x')".into());
        exprs.push("d.split(maxsplit=1.0)".into());
        exprs.push("d.strip(None)".into());
        exprs.push("~d.split(b'a', 1, 2)".into());
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn strip_lstrip_rstrip() {
        let mut exprs = Vec::new();
        for meth in ["strip", "lstrip", "rstrip"] {
            exprs.push(format!("d.{meth}()"));
            for c in [
                "None",
                "b''",
                "b' '",
                "b'a'",
                "b'ab'",
                "b'\\r\\n'",
                "bytes(range(128))",
                "'a'",
                "1",
                "bytearray(b'a')",
                "memoryview(b'b ')",
                "RB(b'a')",
            ] {
                exprs.push(format!("d.{meth}({c})"));
            }
            exprs.push(format!("~d.{meth}(b'a', b'b')"));
        }
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn decode() {
        let mut exprs = Vec::new();
        for args in [
            "",
            "'utf-8'",
            "'UTF8'",
            "'latin-1'",
            "'ascii'",
            "'utf-16'",
            "'cp1252'",
            "'utf-8', 'replace'",
            "'utf-8', 'ignore'",
            "'utf-8', 'surrogateescape'",
            "'ascii', 'backslashreplace'",
            "errors='replace'",
            "encoding='latin-1'",
            "encoding='ascii', errors='ignore'",
            "'hex'",
            "'no-such-codec'",
            "'utf-8', 'bogus'",
        ] {
            exprs.push(format!("d.decode({args})"));
        }
        exprs.push("~d.decode(1)".into());
        assert_same_as_bytes(&exprs);
    }

    #[test]
    fn iteration() {
        assert_same_as_bytes(&strs(&[
            "list(d)",
            "[x for x in d]",
            "sum(d)",
            "next(iter(d), None)",
            "list(reversed(d)) if len(d) < 300 else 0",
            "sorted(d)",
            "max(d, default=-1)",
        ]));
    }

    #[test]
    fn repr_looks_like_bytes() {
        run(r#"
cases = [bytes([i]) for i in range(256)] + [
    b'', b"it's", b'say "hi"', b'both \' and "', b'\\', b'\t\n\r', bytes(range(256)),
]
for c in cases:
    got = repr(ReactorBuffer(c))
    want = 'ReactorBuffer(' + repr(c) + ')'
    assert got == want, (got, want)
"#);
    }

    #[test]
    fn memoryview_method() {
        run(r#"
rb = ReactorBuffer(b'GET /index.html HTTP/1.1\r\n')
mv = rb.memoryview()
assert type(mv) is memoryview
assert mv[:3] == b'GET' and mv.readonly and mv.obj is rb
assert mv.tobytes() == bytes(rb)
try:
    mv[0] = 0
except TypeError:
    pass
else:
    raise AssertionError('memoryview of a ReactorBuffer is writable')
"#);
    }

    #[test]
    fn constructor_takes_bytes_like() {
        run(r#"
for src in [b'abc', bytearray(b'abc'), memoryview(b'abc'), ReactorBuffer(b'abc')]:
    rb = ReactorBuffer(src)
    assert bytes(rb) == b'abc', src
for bad in ['abc', 3, None]:
    try:
        ReactorBuffer(bad)
    except TypeError:
        pass
    else:
        raise AssertionError(repr(bad))
assert type(ReactorBuffer(b'')).__module__ == 'erlang.reactor'
assert type(ReactorBuffer(b'')).__name__ == 'ReactorBuffer'
"#);
    }

    #[test]
    fn rust_search_helpers() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(rfind(b"abcabc", b"bc"), Some(4));
        assert_eq!(rfind(b"abc", b""), Some(3));
        assert_eq!(count(b"aaaa", b"aa"), 2);
        assert_eq!(count(b"abab", b"b"), 2);
        assert_eq!(
            split_on(b"a,b,,c", b",", usize::MAX),
            vec![&b"a"[..], b"b", b"", b"c"]
        );
        assert_eq!(split_whitespace(b"  a b  ", 1), vec![&b"a"[..], b"b  "]);
        assert_eq!(adjust_indices(Some(-2), Some(-100), 5), (3, 0));
        assert_eq!(adjust_indices(None, Some(100), 5), (0, 5));
    }
}
