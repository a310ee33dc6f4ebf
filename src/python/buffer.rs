//! `ReactorBuffer`: the `bytes` that `data_received` gets, read into in place.
//!
//! `ReactorBuffer` is a subclass of `bytes` with no fields of its own, so
//! every `bytes` method, operator and consumer (`json`, `re`, `hashlib`,
//! `socket`, ...) treats it as the `bytes` it is. The loop allocates the
//! object at the full size of a read, lets the kernel `read(2)` straight into
//! its storage (`ob_sval`), then sets its length to what was read. Nothing is
//! copied between the kernel and Python, and no other buffer exists.
//!
//! The type cannot be a pyo3 `#[pyclass]`: pyo3 cannot extend a variable-size
//! base such as `bytes`. It is a heap type made from a `PyType_Spec` with
//! `bytes` as its base and the layout of `bytes` (no `__dict__`, no weak
//! references, not tracked by the garbage collector), which is what makes it
//! sound to allocate and shrink it the way CPython allocates and shrinks a
//! `bytes` (`os.read` does the same with `_PyBytes_Resize`).

use std::ffi::{c_int, CStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::AssertUnwindSafe;
use std::ptr;

use nix::errno::Errno;
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PySystemError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple, PyType};

extern "C" {
    // Part of CPython's C API in every supported version (3.10 to 3.13 and
    // later) but not exported by pyo3-ffi; `os.read` shrinks its `bytes`
    // with it.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> c_int;
}

const NAME: &CStr = c"erlang.reactor.ReactorBuffer";

const DOC: &CStr = c"The bytes read from a connection, as given to data_received.

A subclass of bytes whose storage the port read into, without a copy: a
bytes in every respect (methods, operators, hashing, every library that
takes bytes), whose methods return plain bytes and which pickles and
copies as plain bytes. data.memoryview() is memoryview(data). It is
constructed like bytes; the port makes its buffers itself.";

/// The one `ReactorBuffer` type of this interpreter.
static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The `ReactorBuffer` type, made on first use.
pub fn reactor_buffer_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TYPE.get_or_try_init(py, || make_type(py)).map(|t| t.bind(py))
}

fn make_type(py: Python<'_>) -> PyResult<Py<PyType>> {
    // CPython keeps pointers to the method table for the type's lifetime:
    // it is made once per process and never freed.
    let methods: &'static mut [ffi::PyMethodDef; 5] = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"memoryview".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: memoryview },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"memoryview($self, /)\n--\n\nA read-only memoryview of the data itself (no copy).".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"__reduce__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: reduce },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"__reduce__($self, /)\n--\n\nPickles and copies as the bytes it holds, which load anywhere.".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"fromhex".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: fromhex },
            ml_flags: ffi::METH_O | ffi::METH_CLASS,
            ml_doc: c"fromhex($type, string, /)\n--\n\nbytes.fromhex(string): plain bytes, like every other method.".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"_test_create".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: test_create },
            ml_flags: ffi::METH_O | ffi::METH_CLASS,
            ml_doc: c"_test_create($type, data, /)\n--\n\nA ReactorBuffer holding a copy of data (bytes-like), as the original project's tests make them.".as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    let mut slots = [
        ffi::PyType_Slot { slot: ffi::Py_tp_doc, pfunc: DOC.as_ptr().cast_mut().cast() },
        ffi::PyType_Slot { slot: ffi::Py_tp_methods, pfunc: methods.as_mut_ptr().cast() },
        ffi::PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
    ];
    let mut spec = ffi::PyType_Spec {
        name: NAME.as_ptr(),
        // Zero sizes inherit those of `bytes`: no field is added.
        basicsize: 0,
        itemsize: 0,
        // No `Py_TPFLAGS_HAVE_GC`: like `bytes`, the object refers to
        // nothing but its type, so it never needs the collector (and has no
        // collector header in front of it, which the allocation below relies
        // on). Subclassable, as `bytes` is.
        flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE) as std::ffi::c_uint,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: `spec` and `slots` are valid for the call (CPython copies what
    // it needs from them); the name and doc are static, and the method table
    // is leaked above, so every pointer CPython keeps stays valid. The base
    // is the static `bytes` type. The result is a new reference or NULL with
    // an exception set.
    let made = unsafe {
        let bytes_type = ptr::addr_of_mut!(ffi::PyBytes_Type).cast::<ffi::PyObject>();
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&mut spec, bytes_type))?
    };
    let made = made.cast_into::<PyType>()?;
    check_layout(&made)?;
    Ok(made.unbind())
}

/// Refuses to go on unless the type is laid out exactly as `bytes` (same
/// sizes, no collector header, no `__dict__`, no weak references): the
/// allocation in [`read`] depends on it.
fn check_layout(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let tp = ty.as_type_ptr();
    // SAFETY: both are valid type objects; only their size fields are read,
    // and the flags through the API function.
    let (ours, bytes, flags) = unsafe {
        let bytes = ptr::addr_of!(ffi::PyBytes_Type);
        (
            ((*tp).tp_basicsize, (*tp).tp_itemsize, (*tp).tp_dictoffset, (*tp).tp_weaklistoffset),
            ((*bytes).tp_basicsize, (*bytes).tp_itemsize, 0, 0),
            ffi::PyType_GetFlags(tp),
        )
    };
    let header = std::mem::offset_of!(ffi::PyBytesObject, ob_sval) as ffi::Py_ssize_t;
    if ours != bytes || bytes.0 != header + 1 || bytes.1 != 1 || flags & ffi::Py_TPFLAGS_HAVE_GC != 0 {
        return Err(PySystemError::new_err(format!(
            "ReactorBuffer is not laid out like bytes: (basicsize, itemsize, dictoffset, weaklistoffset) \
             {ours:?} against {bytes:?}, flags {flags:#x}"
        )));
    }
    Ok(())
}

/// Why [`read`] gave no data.
#[derive(Debug)]
pub enum ReadError {
    /// `read(2)` failed (`EAGAIN` included).
    Os(Errno),
    /// The buffer could not be made (`MemoryError`, or a size too large).
    Python(PyErr),
}

/// One `read(2)` of up to `capacity` bytes from `fd` into a new
/// `ReactorBuffer`: `Ok(None)` at end of file (or for a `capacity` of 0).
///
/// The object is allocated at `capacity` and the kernel writes into its own
/// storage. When less than half of it was used, it is shrunk in place (a
/// `realloc` that the allocator does without moving for a shrink, so a small
/// read does not pin `capacity` bytes); otherwise only its length changes.
pub fn read<'py>(py: Python<'py>, fd: BorrowedFd<'_>, capacity: usize) -> Result<Option<Bound<'py, PyBytes>>, ReadError> {
    let ty = reactor_buffer_type(py).map_err(ReadError::Python)?;
    let header = std::mem::offset_of!(ffi::PyBytesObject, ob_sval);
    // The header, `capacity` bytes and the terminating NUL that every
    // `bytes` has.
    let (Ok(length), Some(size)) = (
        ffi::Py_ssize_t::try_from(capacity),
        header.checked_add(capacity).and_then(|s| s.checked_add(1)).filter(|&s| s <= isize::MAX as usize),
    ) else {
        return Err(ReadError::Python(PyOverflowError::new_err("byte string is too large")));
    };
    // SAFETY: `PyObject_Malloc` is called with the GIL held (`py`); the
    // block is checked for NULL before use.
    let raw = unsafe { ffi::PyObject_Malloc(size) }.cast::<ffi::PyBytesObject>();
    if raw.is_null() {
        return Err(ReadError::Python(PyMemoryError::new_err(())));
    }
    // SAFETY: `raw` is a fresh block of `size` bytes, which is the size
    // CPython itself allocates for a `bytes` of `capacity` bytes, and the
    // type has exactly the layout of `bytes` (checked when it was made), so
    // the object header, `ob_shash` and `ob_sval[0..=capacity]` are all in
    // the block. `PyObject_InitVar` sets the type (taking the reference a
    // heap type's instance holds), the size and a reference count of 1;
    // `ob_shash` = -1 marks the hash as not computed, as for any new bytes.
    // From then on `obj` owns the object: dropping it runs the type's
    // deallocator, which frees the block with `PyObject_Free` (the `bytes`
    // deallocator) and releases the type; it reads nothing in `ob_sval`, so
    // the not yet written bytes are never read. No Python code can see the
    // object before it is complete: it is referenced only here.
    let obj = unsafe {
        ffi::PyObject_InitVar(raw.cast(), ty.as_type_ptr(), length);
        #[allow(deprecated)] // the field is deprecated, not gone: bytes' hash cache in 3.10 to 3.13
        ptr::addr_of_mut!((*raw).ob_shash).write(-1);
        Bound::from_owned_ptr(py, raw.cast::<ffi::PyObject>())
    };
    // SAFETY: `ob_sval` has room for `capacity` bytes (above); the kernel
    // writes at most that many, into memory only this object owns.
    let n = unsafe {
        let storage = ptr::addr_of_mut!((*raw).ob_sval).cast::<u8>();
        nix::libc::read(fd.as_raw_fd(), storage.cast(), capacity)
    };
    let n = match Errno::result(n) {
        Ok(0) => return Ok(None),
        Ok(n) => n as usize,
        Err(errno) => return Err(ReadError::Os(errno)),
    };
    let obj = if n < capacity / 2 {
        let mut p = obj.into_ptr();
        // SAFETY: `p` is the only reference to a `bytes` (sub)instance of
        // size `capacity`, with 0 < n < capacity: `_PyBytes_Resize`
        // reallocates it to `n` bytes (moving it if the allocator must,
        // which is safe with no other reference), sets the size, the NUL
        // and the hash cache. On failure it frees the object, sets `p` to
        // NULL and raises `MemoryError`.
        unsafe {
            if _PyBytes_Resize(&mut p, n as ffi::Py_ssize_t) != 0 {
                return Err(ReadError::Python(PyErr::fetch(py)));
            }
            Bound::from_owned_ptr(py, p)
        }
    } else {
        // SAFETY: `n <= capacity`: the size shrinks within the allocation
        // and the NUL goes at `ob_sval[n]`, which is in the block. Nothing
        // else refers to the object yet.
        unsafe {
            (*raw).ob_base.ob_size = n as ffi::Py_ssize_t;
            ptr::addr_of_mut!((*raw).ob_sval).cast::<u8>().add(n).write(0);
        }
        obj
    };
    // SAFETY: the object is an instance of a `bytes` subclass.
    Ok(Some(unsafe { obj.cast_into_unchecked::<PyBytes>() }))
}

/// Runs a method body for CPython: the GIL is held when CPython calls a
/// method, a Python exception becomes NULL with the exception set, and a
/// panic becomes `SystemError` instead of unwinding into C.
///
/// # Safety
///
/// Call only from a function that CPython calls with the GIL held.
unsafe fn method(body: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyAny>>) -> *mut ffi::PyObject {
    // SAFETY: the caller runs inside a CPython method call, GIL held; the
    // token does not outlive this function.
    let py = unsafe { Python::assume_attached() };
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(value)) => value.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            ptr::null_mut()
        }
        Err(_) => {
            PySystemError::new_err("ReactorBuffer method panicked").restore(py);
            ptr::null_mut()
        }
    }
}

/// `data.memoryview()`: a read-only memoryview on the data itself.
unsafe extern "C" fn memoryview(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_NOARGS method: CPython passes a valid `self` and holds
    // the GIL.
    unsafe { method(|py| Ok(PyMemoryView::from(&Bound::from_borrowed_ptr(py, slf))?.into_any())) }
}

/// `data.__reduce__()`: `(bytes, (bytes(data),))`, so that `pickle` and
/// `copy` make a plain `bytes`, which loads where `_py_reactor` does not
/// exist.
unsafe extern "C" fn reduce(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as for `memoryview`.
    unsafe {
        method(|py| {
            let data = Bound::from_borrowed_ptr(py, slf);
            let data = data.cast::<PyBytes>()?;
            let copy = PyBytes::new(py, data.as_bytes());
            let args = PyTuple::new(py, [copy])?;
            Ok(PyTuple::new(py, [py.get_type::<PyBytes>().into_any(), args.into_any()])?.into_any())
        })
    }
}

/// `ReactorBuffer.fromhex(string)`: `bytes.fromhex(string)`. The inherited
/// class method would build a `ReactorBuffer`; every other method returns
/// plain `bytes`, and so does this one.
unsafe extern "C" fn fromhex(_cls: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_O | METH_CLASS method: CPython passes the class and a
    // valid argument and holds the GIL.
    unsafe {
        method(|py| {
            let arg = Bound::from_borrowed_ptr(py, arg);
            py.get_type::<PyBytes>().call_method1("fromhex", (arg,))
        })
    }
}

/// `ReactorBuffer._test_create(data)`: the original project's way for tests
/// to make a buffer; here the same as `ReactorBuffer(data)`.
unsafe extern "C" fn test_create(cls: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a METH_O | METH_CLASS method: CPython passes the class and a
    // valid argument and holds the GIL.
    unsafe {
        method(|py| {
            let cls = Bound::from_borrowed_ptr(py, cls);
            let arg = Bound::from_borrowed_ptr(py, arg);
            cls.call1((arg,))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn with_pair<R>(f: impl FnOnce(Python<'_>, &mut UnixStream, &UnixStream) -> R) -> R {
        Python::initialize();
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        Python::attach(|py| f(py, &mut peer, &ours))
    }

    fn data_ptr(obj: &Bound<'_, PyBytes>) -> *const u8 {
        obj.as_bytes().as_ptr()
    }

    #[test]
    fn the_read_lands_in_the_objects_own_storage() {
        with_pair(|py, peer, ours| {
            // 40 000 of 65 536: more than half, so the object keeps its
            // block and only its length changes.
            let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            peer.write_all(&sent).expect("write");
            let got = read(py, ours.as_fd(), 65_536).expect("read").expect("data");
            assert_eq!(got.as_bytes(), &sent[..]);
            let object = got.as_ptr() as *const u8;
            let offset = std::mem::offset_of!(ffi::PyBytesObject, ob_sval);
            assert_eq!(data_ptr(&got), object.wrapping_add(offset), "the data is inside the object");
            // SAFETY: the NUL after the data is part of the object.
            assert_eq!(unsafe { *data_ptr(&got).add(sent.len()) }, 0, "terminated like any bytes");
            assert!(got.is_instance_of::<PyBytes>());
            assert!(got.get_type().is(reactor_buffer_type(py).expect("type")));
        });
    }

    #[test]
    fn a_small_read_is_shrunk_and_stays_a_reactor_buffer() {
        with_pair(|py, peer, ours| {
            peer.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
            let got = read(py, ours.as_fd(), 65_536).expect("read").expect("data");
            assert_eq!(got.as_bytes(), b"GET / HTTP/1.1\r\n\r\n");
            assert!(got.get_type().is(reactor_buffer_type(py).expect("type")));
            // SAFETY: the NUL after the data is part of the object.
            assert_eq!(unsafe { *data_ptr(&got).add(18) }, 0);
            let size: usize = got.call_method0("__sizeof__").expect("sizeof").extract().expect("int");
            let plain: usize = PyBytes::new(py, got.as_bytes()).call_method0("__sizeof__").expect("sizeof").extract().expect("int");
            assert_eq!(size, plain);
            let hash = got.hash().expect("hash");
            assert_eq!(hash, PyBytes::new(py, got.as_bytes()).hash().expect("hash"));
        });
    }

    #[test]
    fn end_of_file_and_errors() {
        with_pair(|py, peer, ours| {
            match read(py, ours.as_fd(), 1024) {
                Err(ReadError::Os(Errno::EAGAIN)) => {}
                other => panic!("nothing to read yet: {other:?}"),
            }
            peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
            assert!(matches!(read(py, ours.as_fd(), 1024), Ok(None)));
            assert!(matches!(read(py, ours.as_fd(), 0), Ok(None)));
            match read(py, ours.as_fd(), usize::MAX) {
                Err(ReadError::Python(e)) => assert!(e.is_instance_of::<PyOverflowError>(py)),
                other => panic!("an impossible size: {other:?}"),
            }
        });
    }

    #[test]
    fn buffers_release_their_type_and_memory() {
        with_pair(|py, peer, ours| {
            let ty = reactor_buffer_type(py).expect("type").clone();
            let getrefcount = py.import("sys").expect("sys").getattr("getrefcount").expect("getrefcount");
            let refs = || getrefcount.call1((&ty,)).expect("count").extract::<isize>().expect("int");
            let before = refs();
            for i in 0..1000usize {
                peer.write_all(&vec![b'x'; 1 + i * 61]).expect("write");
                let got = read(py, ours.as_fd(), 65_536).expect("read").expect("data");
                assert_eq!(got.as_bytes().len(), 1 + i * 61);
                assert_eq!(refs(), before + 1, "each buffer holds its type");
            }
            assert_eq!(refs(), before, "and gives it back when freed");
        });
    }

    #[test]
    fn the_type_is_a_bytes_subclass_without_dict_or_gc() {
        Python::initialize();
        Python::attach(|py| {
            let ty = reactor_buffer_type(py).expect("type");
            assert!(ty.is_subclass_of::<PyBytes>().expect("subclass"));
            assert_eq!(ty.getattr("__module__").expect("module").to_string(), "erlang.reactor");
            assert_eq!(ty.getattr("__name__").expect("name").to_string(), "ReactorBuffer");
            let bytes = py.get_type::<PyBytes>();
            for attr in ["__basicsize__", "__itemsize__", "__dictoffset__", "__weakrefoffset__"] {
                let ours: isize = ty.getattr(attr).expect("attr").extract().expect("int");
                let theirs: isize = bytes.getattr(attr).expect("attr").extract().expect("int");
                assert_eq!(ours, theirs, "{attr}");
            }
            let flags: std::ffi::c_ulong = ty.getattr("__flags__").expect("flags").extract().expect("int");
            assert_eq!(flags & ffi::Py_TPFLAGS_HAVE_GC, 0, "not tracked by the collector");
            assert!(check_layout(ty).is_ok());
        });
    }
}
